"""`rag-autotune`: bootstrap the base encoder, ingest a corpus, run the embedded local stack, tune, roll back.

Every command talks to AWS through boto3's standard configuration. While `rag-autotune up` runs, commands in
other shells use its moto server by themselves (it announces itself next to its state folder); AWS_ENDPOINT_URL
points them at another endpoint (LocalStack), and with neither they go to AWS."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .errors import ConflictError, EndpointUnreachable, IngestError, NotReady, RagError
from .paths import LOCAL_STATE, REPO
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
    bars: list[Any] = []  # made at the first update: an ingest that fails before embedding prints one line

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=desc, unit="chunk"))
        bar = bars[0]
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


def _crawl(rt: Runtime, url: str, args: argparse.Namespace) -> tuple[list[Any], list[str], dict[str, Any]]:
    from .adapters.http_fetch import http_fetcher
    from .readers import ReadLimits
    from .readers.crawl import crawl, load_state

    s = rt.settings
    limits = ReadLimits.from_settings(s)
    result = crawl(
        url,
        http_fetcher(s.crawl_user_agent, s.crawl_timeout_s, limits.max_file_bytes),
        limits,
        user_agent=s.crawl_user_agent,
        max_pages=args.max_pages or s.crawl_max_pages,
        concurrency=s.crawl_concurrency,
        known={} if args.replace else load_state(rt.store, url),  # --replace needs every page's text
    )
    if result.unchanged:
        print(f"unchanged since the last crawl (not fetched again): {len(result.unchanged)} page(s)")
    return result.documents, [str(s) for s in result.skipped], result.state


def cmd_ingest(rt: Runtime, args: argparse.Namespace) -> int:
    from .ingest import ingest
    from .readers import ReadLimits

    s = rt.settings
    source = str(args.path)
    loaded = state = None
    if source.startswith(("http://", "https://")):
        docs, skipped, state = _crawl(rt, source, args)
        if not docs:
            for err in skipped:
                print(f"skipped: {err}", file=sys.stderr)
            if state:  # every page answered 304: the live index already has them
                print("nothing changed: the live index stays as it is")
                return 0
            raise IngestError(f"{source}: no pages read" + (f" ({skipped[0]})" if skipped else ""))
        loaded = (docs, skipped)

    def run(fan_out: Any) -> Any:
        return ingest(
            source if loaded else Path(source),
            store=rt.store,
            index=rt.index,
            load_encoder=rt.load_bulk_encoder,
            replace=args.replace,
            strict=getattr(args, "strict", False),
            limits=ReadLimits.from_settings(s),
            loaded=loaded,
            chunk_chars=s.chunk_chars,
            chunk_overlap=s.chunk_overlap,
            keep=s.tune_retention,
            progress=_progress("embedding"),
            fan_out=fan_out,
        )

    try:  # more chunks to embed than one shard: the ingest state machine's embed Map (ingest_fanout.py)
        report = run(rt.ingest_fan_out(progress=_progress("embedding (fanned out)")))
    except NotReady as exc:
        if "state machine" not in str(exc):
            raise
        print(f"{exc}: embedding here instead", file=sys.stderr)
        report = run(None)
    if state is not None:
        from .readers.crawl import save_state

        save_state(rt.store, source, state)  # only now: a failed ingest fetches everything again next time
    for err in report.errors:
        print(f"skipped: {err}", file=sys.stderr)
    if report.errors:
        print(f"skipped {len(report.errors)} input(s), each named above with the reason")
    print(
        f"embedded {report.embedded} chunks, reused {report.reused}" + ("" if report.changed else ": nothing changed")
    )
    print(
        f"live: model {report.model_version}, index {report.index_version} "
        f"({report.documents} documents, {report.chunks} chunks)"
    )
    return 0


def cmd_rollback(rt: Runtime, args: argparse.Namespace) -> int:
    from .versions import rollback

    manifest = rollback(rt.store, keep=rt.settings.tune_retention)
    rt.index.publish(manifest.live.index_version)
    print(f"live: model {manifest.live.model_version}, index {manifest.live.index_version}")
    return 0


class _TuneWatch:
    """What `tune --wait` prints: a line per change of status or current step, and the running step's
    progress (train: optimizer steps, embed: chunks) as a tqdm bar on a terminal, else a line every 10%."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic, bars: bool | None = None) -> None:
        self.out, self.clock, self.started = out, clock, clock()
        if bars is None:  # serving-only installs have no tqdm
            bars = out.isatty() and importlib.util.find_spec("tqdm") is not None
        self.bars = bars
        self.bar: Any = None
        self.shown: tuple[str, int] | None = None

    def _line(self, text: str) -> None:
        print(f"[{self.clock() - self.started:6.1f}s] {text}", file=self.out, flush=True)

    def change(self, record: dict[str, Any]) -> None:
        self.close()
        self._line(f"{record.get('status', '?'):<9} step: {record.get('step') or '-'}")

    def progress(self, p: dict[str, Any]) -> None:
        step, unit = str(p.get("step")), str(p.get("unit", "item"))
        done, total = int(p.get("done", 0)), int(p.get("total", 0))
        if self.bars:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(desc=f"{'':<9} {step}", unit=unit, total=total, file=self.out)
            self.bar.total, self.bar.n = total, done
            self.bar.refresh()
            return
        tenth = done * 10 // max(total, 1)
        if self.shown != (step, tenth):
            self.shown = (step, tenth)
            self._line(f"{'':<9} {step}: {unit} {done}/{total}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_tune(rt: Runtime, args: argparse.Namespace) -> int:
    from .tune import launch

    run_id, execution_arn = launch.start(rt.launcher)
    print(execution_arn, flush=True)
    if not args.wait:
        return 0
    watch = _TuneWatch(sys.stdout)
    try:
        final = launch.follow(
            rt.launcher,
            rt.store,
            run_id,
            execution_arn,
            watch.change,
            timeout_s=args.timeout,
            on_progress=watch.progress,
        )
    finally:
        watch.close()
    print(_run_summary(final))
    return launch.EXIT_CODES.get(str(final.get("status")), 1)


def _run_summary(r: dict[str, Any]) -> str:
    parts = [f"run {r.get('run_id')}: {r.get('status')}"]
    if r.get("reason"):
        parts.append(f"  reason: {r['reason']}")
    for name, ba in (r.get("metrics") or {}).items():
        b, a = ba["before"], ba["after"]
        parts.append(
            f"  {name:<9} nDCG@10 {b['ndcg@10']:.3f} → {a['ndcg@10']:.3f}   P@5 {b['p@5']:.3f} → "
            f"{a['p@5']:.3f}   hit@5 {b['hit@5']:.3f} → {a['hit@5']:.3f}   (n={a['n']})"
        )
    if r.get("candidate"):
        parts.append(f"  candidate: {r['candidate']['model_version']} / {r['candidate']['index_version']}")
    return "\n".join(parts)


def cmd_runs(rt: Runtime, args: argparse.Namespace) -> int:
    from .tune.runs import list_runs, progress_text, read_progress

    rows = list_runs(rt.store, args.limit)
    if not rows:
        print("no tune runs yet")
        return 0
    header = (
        f"{'run':<26} {'status':<9} {'started (UTC)':<20} {'secs':>6} {'votes':>6} {'trip':>5} {'used':>5} "
        f"{'held-out nDCG@10':>17} {'repeated nDCG@10':>17} {'model':<6}"
    )
    print(header)
    for r in rows:
        start = float(r.get("started_at", 0))
        secs = float(r.get("finished_at", start)) - start if r.get("finished_at") else 0.0
        counts = r.get("counts") or {}
        print(
            f"{r['run_id'][:26]:<26} {r.get('status', '?'):<9} "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(start)):<20} {secs:>6.0f} "
            f"{counts.get('votes', 0):>6} {counts.get('triplets', 0):>5} {_used(r):>5} "
            f"{_delta(r, 'heldout'):>17} {_delta(r, 'repeated'):>17} "
            f"{(r.get('candidate') or {}).get('model_version', '-'):<6}"
        )
        if r.get("status") == "RUNNING":
            p = read_progress(rt.store, r["run_id"])
            at = f" ({progress_text(p)})" if p and p.get("step") == r.get("step") else ""
            print(f"  running: {r.get('step') or '-'}{at}")
        elif r.get("reason"):
            reason = str(r["reason"])
            print(f"  reason: {reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 1] + '…'}")
        left = (r.get("training") or {}).get("triplets_left")
        if left:
            print(f"  budget: {left} triplet(s) left for another night (training fits RAG_TUNE_TRAIN_BUDGET_S)")
    return 0


def _used(r: dict[str, Any]) -> str:
    """Triplets the run trained on: all of them unless the time budget left some for another night."""
    used = (r.get("training") or {}).get("triplets_used")
    return "-" if used is None else str(used)


_REASON_CHARS = 200  # `runs` is a table: a long error message is cut (the run record keeps it whole)


def _delta(r: dict[str, Any], name: str) -> str:
    m = (r.get("metrics") or {}).get(name)
    return f"{m['before']['ndcg@10']:.3f}→{m['after']['ndcg@10']:.3f}" if m else "-"


def cmd_report(rt: Runtime, args: argparse.Namespace) -> int:
    from .tune.pages import report_key, run_report

    run_id, page = run_report(rt.store, args.run)
    path = _write_page(Path(args.out) / f"report-{run_id}.html", page, args.open)
    print(f"run {run_id}: s3://{rt.settings.bucket}/{report_key(run_id)}\n{path}")
    return 0


def cmd_dashboard(rt: Runtime, args: argparse.Namespace) -> int:
    from .tune.pages import DASHBOARD_KEY, build_dashboard

    path = _write_page(Path(args.out) / "dashboard.html", build_dashboard(rt.store, rt.feedback), args.open)
    print(f"s3://{rt.settings.bucket}/{DASHBOARD_KEY}\n{path}\n(also served at /dashboard by `rag-autotune up`)")
    return 0


def _write_page(path: Path, page: bytes, open_it: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(page)
    if open_it:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return path.resolve()


def cmd_golden(rt: Runtime, args: argparse.Namespace) -> int:
    from .golden import add_golden

    total = add_golden(rt.store, query=args.query, relevant=args.relevant, path=args.file)
    print(f"golden set: {total} queries")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Only the API, against whatever AWS endpoint is configured (AWS, LocalStack, a running `up`)."""
    from .local import process_tuning
    from .local.server import ApiServer, load_api_module

    api = ApiServer(load_api_module().app, host=args.host, port=args.port).start()
    process_tuning.settle()  # the app and the live pair are loaded
    print(f"serving {api.url} (Ctrl-C stops)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    api.stop()
    return 0


def _scheduled_start(rt: Runtime) -> None:
    """What the EventBridge rule does on AWS: start the workflow (moto stores rules but never fires them)."""
    from .tune import launch

    _, arn = launch.start(rt.launcher, trigger="schedule")
    print(f"nightly tune started: {arn}", flush=True)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """The whole system on this machine: moto as AWS, the API over HTTP, state kept across restarts."""
    from .local import cfn, discovery, process_tuning, queue_source, sfn, stack
    from .local.api_process import ApiProcess
    from .local.scheduler import Scheduler
    from .versions import read_manifest

    state = Path(args.state) if args.state else _state_dir(settings)
    running = discovery.find(state)
    if running is not None:  # two servers saving into one folder would overwrite each other's state
        raise ConflictError(
            f"a local stack on {state} is already up (pid {running.pid}, API {running.api}): "
            "stop it first, or give this one another --state"
        )
    moto = stack.MotoStack(args.moto_port).start(settings.region)
    try:  # template.yaml → SAM transform → a stack in moto, plus the named steps for moto's gaps (local/cfn.py)
        deployed = cfn.deploy_stack(settings)
    except BaseException:
        moto.stop()
        raise
    print(f"stack {deployed.stack_name} created from template.yaml; moto gaps closed by: {', '.join(deployed.steps)}")
    objects, items = stack.restore(settings, state)
    if objects or items:
        print(f"restored {objects} objects and {items} items from {state}")
    rt = Runtime(settings)
    api: ApiProcess | None = None
    try:
        from .training.bootstrap import bootstrap

        bootstrap(rt.store, settings.cache_dir)
        if read_manifest(rt.store) is None:
            print(f"ingesting the demo corpus {args.corpus}")
            cmd_ingest(rt, argparse.Namespace(path=args.corpus, replace=False, strict=True, max_pages=None))
        stack.save(settings, state)
        # Its own process: /ask no longer shares a GIL with moto, the local Step Functions and the saves.
        api = ApiProcess("127.0.0.1", args.port or stack.free_port()).start()
        cron = sfn.schedule() or "cron(0 3 * * ? *)"
        nightly = Scheduler(cron, lambda: _scheduled_start(rt)).start()
        pollers = queue_source.start_pollers(deployed.queue_sources, settings.region)
    except BaseException:
        if api is not None:
            api.stop()
        moto.stop()
        raise
    process_tuning.settle()  # moto's process, now loaded
    discovery.announce(state, moto.url, api.url)
    me = _command_name()
    try:
        print(
            f"""
RAG-Autotune is up (embedded default: moto on {moto.url}).
  API       {api.url}/ask  {api.url}/feedback  {api.url}/health  {api.url}/openapi.json
  Widget    {api.url}/ (demo page; embed {api.url}/widget.js)   Runs  {api.url}/dashboard (after `dashboard`)
  Try       curl -s {api.url}/ask -H 'content-type: application/json' -d '{{"query": "how do I create a pipe"}}'
  Tune      nightly at {cron} (UTC) by the local scheduler, or now: {me} tune --wait
  Docs      files put under s3://{settings.bucket}/{settings.docs_prefix} (or deleted) are ingested in batches
  CLI       in another shell, `{me} runs` (or tune, rollback, ingest…) finds this stack by itself; or pin it:
export AWS_ENDPOINT_URL={moto.url}
Ctrl-C stops it; state is saved to {state}.""",
            flush=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        code = 0
        try:
            while not stop.wait(60):
                if not api.alive():
                    print(f"the API process exited ({api.stop()}): stopping", file=sys.stderr, flush=True)
                    code = 1
                    break
                stack.save(settings, state)  # also periodically, so a kill -9 loses at most a minute
        except KeyboardInterrupt:
            pass
        print("\nstopping: saving state…", flush=True)
        discovery.withdraw(state)  # commands started from now on must not count on this stack
        nightly.stop()
        for poller in pollers:
            poller.stop()
        api.stop()
        stack.save(settings, state)
    finally:
        discovery.withdraw(state)
        api.stop()
        moto.stop()
    return code


def _state_dir(settings: Settings) -> Path:
    return settings.state_dir or LOCAL_STATE


def _command_name() -> str:
    """This CLI as the user's shell reaches it (`.venv/bin/rag-autotune` under `make run`), for pasted lines."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "rag-autotune":
        relative = os.path.relpath(argv0.absolute())
        if not relative.startswith(".."):
            return relative if os.sep in relative else f".{os.sep}{relative}"
    return "rag-autotune"


def _connect(settings: Settings) -> None:
    """Which AWS this command talks to: AWS_ENDPOINT_URL when it is set (one on this machine must answer),
    else the stack a running `up` announced, else AWS itself. Credentials follow in adapters/aws.py."""
    from .adapters import aws
    from .local import discovery

    state = _state_dir(settings)
    exported = aws.configured_endpoint()
    if exported is None:
        running = discovery.find(state)
        if running is not None:
            print(
                f"using the local stack at {running.endpoint} (`rag-autotune up`, pid {running.pid})", file=sys.stderr
            )
            aws.use_endpoint(running.endpoint, settings.region)
        elif not aws.has_credentials(settings.region):
            raise EndpointUnreachable(
                "no local stack is up (start it with `make run`) and boto3 finds no AWS credentials to reach AWS"
            )
        return
    if aws.is_local_endpoint(exported) and not discovery.answers(exported):
        running = discovery.find(state)
        hint = (
            f"the local stack is up at {running.endpoint}: export AWS_ENDPOINT_URL={running.endpoint}"
            if running is not None
            else "start the local stack with `make run`"
        )
        raise EndpointUnreachable(
            f"nothing answers at {exported} (AWS_ENDPOINT_URL): {hint}, or unset AWS_ENDPOINT_URL"
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag-autotune", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bootstrap", help="export the base encoder to ONNX int8 and upload it as model v0")
    b.add_argument("--force", action="store_true", help="rebuild v0 even if it exists")
    i = sub.add_parser(
        "ingest",
        help="index documents and make them live: a folder (HTML, PDF, Markdown, text), one such file, a JSONL "
        "file, or a site's URL (its sitemap.xml, or a page whose links are followed)",
    )
    i.add_argument("path", help="folder, file or http(s) URL")
    i.add_argument(
        "--replace",
        action="store_true",
        help="the path is the whole corpus: documents not in it are dropped (default: merge into the live corpus)",
    )
    i.add_argument("--strict", action="store_true", help="any unreadable file, record or page aborts the ingest")
    i.add_argument("--max-pages", type=int, help="a URL: fetch at most this many pages (RAG_CRAWL_MAX_PAGES)")
    # Before --strict, bad records aborted unless this was given; now skipping is the default.
    i.add_argument("--skip-invalid", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("rollback", help="make the previous model/index pair live again")
    t = sub.add_parser("tune", help="start a tune run now and print its execution ARN")
    t.add_argument("--wait", action="store_true", help="follow the steps; exit 0 SWAPPED, 3 REJECTED/SKIPPED, 1 FAILED")
    t.add_argument("--timeout", type=float, default=3600.0)
    r = sub.add_parser("runs", help="past tune runs")
    r.add_argument("--limit", type=int, default=20)
    rp = sub.add_parser("report", help="fetch a tune run's report page (the newest run's by default)")
    rp.add_argument("run", nargs="?", help="run id (see `runs`)")
    db = sub.add_parser("dashboard", help="build the page of every run's quality, latency and the votes per day")
    for page in (rp, db):
        page.add_argument("--out", default=str(REPO / ".local" / "reports"), help="folder to write the page into")
        page.add_argument("--open", action="store_true", help="open it in a browser")
    g = sub.add_parser("golden", help="the golden query set the smoke gate must not regress on")
    gsub = g.add_subparsers(dest="golden_command", required=True)
    ga = gsub.add_parser("add", help="add one query (--query, --relevant) or a JSONL file of them (--file)")
    ga.add_argument("--query")
    ga.add_argument("--relevant", nargs="+", default=[], help="doc ids that answer the query")
    ga.add_argument("--file", help='JSONL of {"query": ..., "relevant": [doc ids]}')
    sv = sub.add_parser("serve", help="serve only the API against the configured AWS endpoint")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    u = sub.add_parser("up", help="run everything locally (moto as AWS) and serve the API")
    u.add_argument("--port", type=int, default=8000)
    u.add_argument("--moto-port", type=int, default=0)
    u.add_argument(
        "--state", help="folder the state is saved to and restored from (default: RAG_STATE_DIR, else .local/state)"
    )
    u.add_argument("--corpus", default=str(DEMO_CORPUS))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = get_settings()
    commands: dict[str, Callable[[Runtime, argparse.Namespace], int]] = {
        "bootstrap": cmd_bootstrap,
        "ingest": cmd_ingest,
        "rollback": cmd_rollback,
        "tune": cmd_tune,
        "runs": cmd_runs,
        "report": cmd_report,
        "dashboard": cmd_dashboard,
        "golden": cmd_golden,
    }
    try:
        if args.command == "up":
            return cmd_up(settings, args)
        _connect(settings)
        if args.command == "serve":
            return cmd_serve(settings, args)
        return commands[args.command](Runtime(settings), args)
    except RagError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
