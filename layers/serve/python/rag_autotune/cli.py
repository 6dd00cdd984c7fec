"""`rag-autotune`: bootstrap the base encoder, ingest a corpus, run the embedded local stack, tune, roll back.

Every command talks to AWS through boto3's standard configuration; point AWS_ENDPOINT_URL at LocalStack or
at the embedded moto server (`rag-autotune up` prints it) to work locally."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from .errors import RagError
from .paths import REPO
from .runtime import Runtime
from .settings import Settings, get_settings

DEMO_CORPUS = REPO / "demo" / "corpus.jsonl"


def _progress(desc: str) -> Callable[[int, int], None]:
    try:
        from tqdm import tqdm
    except ImportError:  # serving-only installs have no tqdm: print every 10%
        last = [-1]

        def plain(done: int, total: int) -> None:
            step = done * 10 // max(total, 1)
            if step != last[0]:
                last[0] = step
                print(f"{desc}: {done}/{total}", file=sys.stderr)

        return plain
    bar = tqdm(desc=desc, unit="chunk")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_bootstrap(rt: Runtime, args: argparse.Namespace) -> int:
    from .training.bootstrap import bootstrap

    report = bootstrap(rt.store, rt.settings.cache_dir, force=args.force)
    print(json.dumps(report, indent=2))
    return 0


def cmd_ingest(rt: Runtime, args: argparse.Namespace) -> int:
    from .ingest import ingest

    s = rt.settings
    report = ingest(
        Path(args.path), store=rt.store, index=rt.index, load_encoder=rt.load_encoder, replace=args.replace,
        skip_invalid=args.skip_invalid, chunk_chars=s.chunk_chars, chunk_overlap=s.chunk_overlap,
        keep=s.tune_retention, progress=_progress("embedding"),
    )
    for err in report.errors:
        print(f"skipped: {err}", file=sys.stderr)
    print(f"live: model {report.model_version}, index {report.index_version} "
          f"({report.documents} documents, {report.chunks} chunks)")
    return 0


def cmd_rollback(rt: Runtime, args: argparse.Namespace) -> int:
    from .versions import rollback

    manifest = rollback(rt.store, keep=rt.settings.tune_retention)
    rt.index.publish(manifest.live.index_version)
    print(f"live: model {manifest.live.model_version}, index {manifest.live.index_version}")
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """The whole system on this machine: moto as AWS, the API over HTTP, state kept across restarts."""
    from .local import stack
    from .local.server import ApiServer, load_api_module
    from .versions import read_manifest

    moto = stack.MotoStack(args.moto_port).start()
    state = Path(args.state)
    objects, items = stack.restore(settings, state)
    if objects or items:
        print(f"restored {objects} objects and {items} items from {state}")
    rt = Runtime(settings)
    try:
        from .training.bootstrap import bootstrap

        bootstrap(rt.store, settings.cache_dir)
        if read_manifest(rt.store) is None:
            print(f"ingesting the demo corpus {args.corpus}")
            cmd_ingest(rt, argparse.Namespace(path=args.corpus, replace=False, skip_invalid=False))
        stack.save(settings, state)
        api = ApiServer(load_api_module().app, port=args.port).start()
    except BaseException:
        moto.stop()
        raise
    print(f"""
RAG-Autotune is up (embedded default: moto on {moto.url}).
  API       {api.url}/ask  {api.url}/feedback  {api.url}/health  {api.url}/openapi.json
  Try       curl -s {api.url}/ask -H 'content-type: application/json' -d '{{"query": "how do I create a pipe"}}'
  Other CLI commands in another shell: export AWS_ENDPOINT_URL={moto.url}
Ctrl-C stops it; state is saved to {state}.""", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(60):
            stack.save(settings, state)  # also periodically, so a kill -9 loses at most a minute
    except KeyboardInterrupt:
        pass
    print("\nstopping: saving state…", flush=True)
    api.stop()
    stack.save(settings, state)
    moto.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag-autotune", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bootstrap", help="export the base encoder to ONNX int8 and upload it as model v0")
    b.add_argument("--force", action="store_true", help="rebuild v0 even if it exists")
    i = sub.add_parser("ingest", help="index a JSONL file or a folder of .md/.txt files and make it live")
    i.add_argument("path")
    i.add_argument("--replace", action="store_true", help="rebuild the corpus from scratch")
    i.add_argument("--skip-invalid", action="store_true", help="ingest the good records, skip malformed ones")
    sub.add_parser("rollback", help="make the previous model/index pair live again")
    u = sub.add_parser("up", help="run everything locally (moto as AWS) and serve the API")
    u.add_argument("--port", type=int, default=8000)
    u.add_argument("--moto-port", type=int, default=0)
    u.add_argument("--state", default=str(REPO / ".local" / "state"))
    u.add_argument("--corpus", default=str(DEMO_CORPUS))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = get_settings()
    commands: dict[str, Callable[[Runtime, argparse.Namespace], int]] = {
        "bootstrap": cmd_bootstrap, "ingest": cmd_ingest, "rollback": cmd_rollback,
    }
    try:
        if args.command == "up":
            return cmd_up(settings, args)
        return commands[args.command](Runtime(settings), args)
    except RagError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
