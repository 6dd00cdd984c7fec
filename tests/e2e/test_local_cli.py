"""The CLI from a second shell on a fresh machine: `rag-autotune up` runs in its own process, and each command runs
as `.venv/bin/rag-autotune` in a new bash with an empty HOME (no ~/.aws) and no AWS_* variable at all, given
either the one export line `up` printed or nothing. The README's quick-start blocks run the same way.

Not run here: `make run` itself (it is `make install` plus the `rag-autotune up` this module starts, and it would
reinstall the shared .venv), `make test` (this suite), and the LocalStack and AWS blocks (Docker, an account)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag_autotune.local.stack import free_port
from rag_autotune.paths import REPO

CLI = ".venv/bin/rag-autotune"  # as the README and `up` write it, relative to the repository
UP_DOCS = ("pipe.2", "dev_t.3type", "pause.2")  # the README asks about pipes and votes for pipe.2
START_TIMEOUT_S = 300.0

pytestmark = pytest.mark.skipif(not (REPO / CLI).exists(), reason=f"{CLI} is missing (make install creates it)")


def _demo_docs(*ids: str) -> str:
    by_id = {json.loads(line)["id"]: line for line in (REPO / "demo" / "corpus.jsonl").read_text().splitlines()}
    return "".join(by_id[i] + "\n" for i in ids)


def fresh_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A new user's shell: PATH, this checkout's code, an empty HOME; no AWS_* and no RAG_* from this session."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONPATH": f"{REPO / 'layers' / 'serve' / 'python'}{os.pathsep}{REPO}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if "LANG" in os.environ:
        env["LANG"] = os.environ["LANG"]
    env.update(extra)
    assert not [k for k in env if k.startswith("AWS_")]
    return env


def shell(script: str, env: dict[str, str], timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def local_up(stack: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    tmp = tmp_path_factory.mktemp("local-up")
    corpus = tmp / "corpus.jsonl"
    corpus.write_text(_demo_docs(*UP_DOCS))
    # The base model the session's stack already exported, in the folder layout `up` saves: `up` restores it
    # rather than exporting it again (most of its start-up time). Everything else starts from nothing.
    for key in stack.rt.store.list_keys("models/v0/"):
        target = tmp / "state" / "s3" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(stack.rt.store.get_bytes(key))
    # The stack's own state folder and model cache (RAG_STATE_DIR is also where a CLI looks for a running `up`).
    env = fresh_env(tmp, RAG_STATE_DIR=str(tmp / "state"), RAG_CACHE_DIR=str(tmp / "cache"))
    port = free_port()
    log = (tmp / "up.stderr").open("w")
    proc = subprocess.Popen(
        [CLI, "up", "--port", str(port), "--corpus", str(corpus)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not any(line.startswith("Ctrl-C stops it") for line in banner):
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line is not None, f"`up` exited {proc.wait()}:\n{''.join(banner)}\n{(tmp / 'up.stderr').read_text()}"
            banner.append(line)
    except queue.Empty:
        proc.kill()
        pytest.fail(f"`up` did not come up in {START_TIMEOUT_S:.0f} s:\n{''.join(banner)}")
    exports = [line.rstrip("\n") for line in banner if line.startswith("export ")]
    assert len(exports) == 1, banner
    endpoint = exports[0].removeprefix("export AWS_ENDPOINT_URL=")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", endpoint), exports
    running = tmp / "state.running.json"
    assert json.loads(running.read_text())["pid"] == proc.pid
    up = SimpleNamespace(
        tmp=tmp, port=port, proc=proc, export=exports[0], endpoint=endpoint, env=env, running=running, banner=banner
    )
    # A second pair, so that rollback has one to go back to.
    (tmp / "second.jsonl").write_text(_demo_docs("cc_t.3type"))
    second = shell(f"{up.export}\n{CLI} ingest {tmp / 'second.jsonl'}", env)
    assert second.returncode == 0, second.stderr
    try:
        yield up
    finally:
        api_children = _children_serving(proc.pid)
        stopping = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
    assert proc.returncode == 0, (tmp / "up.stderr").read_text()
    assert not running.exists()  # a stopped stack is no longer announced
    # The API ran in a child process of `up` (its own GIL); SIGTERM on `up` ended it, and the state was saved.
    assert len(api_children) == 1, api_children
    assert not Path(f"/proc/{api_children[0]}").exists() or _zombie(api_children[0])
    # (s3-etags.json is written by every save; unchanged objects and tables are hard links that keep old times)
    assert (tmp / "state" / "s3-etags.json").stat().st_mtime >= stopping - 1


def _children_serving(pid: int) -> list[int]:
    """The child processes of pid running `rag_autotune.cli serve` (the API that `up` starts)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"serve" in cmdline and b"rag_autotune.cli" in cmdline:
                found.append(int(child))
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_up_prints_one_export_line_to_paste(local_up: SimpleNamespace) -> None:
    """The line stands alone, so a copy of it is exactly what a shell needs."""
    assert local_up.export == f"export AWS_ENDPOINT_URL={local_up.endpoint}"
    assert any(f"{CLI} runs" in line for line in local_up.banner)


def test_every_command_works_with_only_the_printed_export_line(local_up: SimpleNamespace) -> None:
    env = fresh_env(local_up.tmp, RAG_CACHE_DIR=str(local_up.tmp / "cli-cache"))  # no RAG_STATE_DIR: no discovery

    def run(command: str) -> subprocess.CompletedProcess[str]:
        result = shell(f"{local_up.export}\n{CLI} {command}", env)
        _no_traceback(result)
        assert "using the local stack" not in result.stderr  # the export decided, not the announcement
        return result

    assert run("runs").returncode == 0

    tune = run("tune --wait")
    assert tune.returncode == 3, tune.stdout + tune.stderr  # SKIPPED: a fresh stack has no votes to learn from
    run_id = re.search(r"^run (\S+): SKIPPED$", tune.stdout, re.M)
    assert run_id, tune.stdout
    assert "not enough feedback" in tune.stdout
    runs = run("runs")
    assert runs.returncode == 0 and run_id.group(1)[:26] in runs.stdout, runs.stdout

    edited = json.loads(_demo_docs("mode_t.3type"))
    edited["text"] += " Edited here, so that the merge has one document's chunks to embed."
    (local_up.tmp / "third.jsonl").write_text(json.dumps(edited) + "\n")
    ingest = run(f"ingest {local_up.tmp / 'third.jsonl'}")
    assert ingest.returncode == 0, ingest.stderr
    assert re.search(r"^embedded [1-9]\d* chunks, reused [1-9]\d*$", ingest.stdout, re.M), ingest.stdout
    ingested = re.search(r"^live: model (v\d+), index (\S+) \(", ingest.stdout, re.M)
    assert ingested, ingest.stdout

    before = json.loads(shell(f"curl -s localhost:{local_up.port}/health", env).stdout)
    assert (before["model_version"], before["index_version"]) == ingested.groups()
    rollback = run("rollback")
    assert rollback.returncode == 0, rollback.stderr
    rolled = re.search(r"^live: model (v\d+), index (\S+)$", rollback.stdout, re.M)
    assert rolled and rolled.group(2) != ingested.group(2), rollback.stdout


def test_commands_find_the_running_stack_with_no_export(local_up: SimpleNamespace) -> None:
    env = fresh_env(local_up.tmp, RAG_STATE_DIR=local_up.env["RAG_STATE_DIR"], RAG_CACHE_DIR=str(local_up.tmp / "c2"))
    said = f"using the local stack at {local_up.endpoint} (`rag-autotune up`, pid {local_up.proc.pid})"
    for command in ("runs", "rollback", "runs"):
        result = shell(f"{CLI} {command}", env)
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines().count(said) == 1, result.stderr
        _no_traceback(result)


def test_a_second_up_on_the_same_state_is_refused(local_up: SimpleNamespace) -> None:
    result = shell(f"{CLI} up --port {free_port()}", local_up.env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error (conflict): a local stack on {local_up.env['RAG_STATE_DIR']} is already up "
        f"(pid {local_up.proc.pid}, API http://127.0.0.1:{local_up.port}): "
        "stop it first, or give this one another --state"
    ]


def test_an_endpoint_where_nothing_listens_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = fresh_env(tmp_path, RAG_STATE_DIR=str(tmp_path / "state"))  # no stack announced there
    result = shell(f"export AWS_ENDPOINT_URL=http://127.0.0.1:9\n{CLI} runs", env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error (endpoint_unreachable): nothing answers at http://127.0.0.1:9 (AWS_ENDPOINT_URL): "
        "start the local stack with `make run`, or unset AWS_ENDPOINT_URL"
    ]


def test_a_stale_export_names_the_stack_that_is_up(local_up: SimpleNamespace) -> None:
    """After a restart moto listens on another port: the error says where the stack is now."""
    result = shell(f"export AWS_ENDPOINT_URL=http://127.0.0.1:9\n{CLI} runs", local_up.env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error (endpoint_unreachable): nothing answers at http://127.0.0.1:9 (AWS_ENDPOINT_URL): the local stack "
        f"is up at {local_up.endpoint}: export AWS_ENDPOINT_URL={local_up.endpoint}, or unset AWS_ENDPOINT_URL"
    ]


def test_no_stack_and_no_credentials_says_to_start_the_stack(tmp_path: Path) -> None:
    # Instance metadata is where boto3 looks last for credentials; this machine is no EC2 instance.
    env = {**fresh_env(tmp_path, RAG_STATE_DIR=str(tmp_path / "state")), "AWS_EC2_METADATA_DISABLED": "true"}
    result = shell(f"{CLI} runs", env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error (endpoint_unreachable): no local stack is up (start it with `make run`) and boto3 finds no AWS "
        "credentials to reach AWS"
    ]


def readme_blocks() -> list[str]:
    """The ```bash blocks of README.md's quick start: the curl lines, then the second shell's lines."""
    text = (REPO / "README.md").read_text()
    start = text.index("Once it is up:")
    end = text.index("\n## ", start)
    return re.findall(r"```bash\n(.*?)```", text[start:end], re.S)


def commands_of(block: str) -> list[str]:
    """Shell commands, one per entry: comment lines dropped, backslash continuations joined."""
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if not line.endswith("\\"):
            commands.append(pending)
            pending = ""
    assert not pending, f"unfinished command in the README: {pending}"
    return commands


def test_readme_quick_start_runs_as_written(local_up: SimpleNamespace) -> None:
    """Each command exactly as the README writes it, on the test's stack: its port in place of 8000, and its
    state folder in RAG_STATE_DIR (the README's stack keeps it in .local/state)."""
    curl_block, cli_block = readme_blocks()
    assert curl_block.count("localhost:8000") >= 3
    commands = [c.replace("localhost:8000", f"localhost:{local_up.port}") for c in commands_of(curl_block)]
    commands += commands_of(cli_block)
    env = fresh_env(local_up.tmp, RAG_STATE_DIR=local_up.env["RAG_STATE_DIR"], RAG_CACHE_DIR=str(local_up.tmp / "c3"))
    out = local_up.tmp / "readme"
    out.mkdir(exist_ok=True)
    # One shell for the whole quick start (the vote uses the query id the line before it kept in $qid); each
    # command's output and exit status go to files of their own.
    script = "".join(
        f"{{ {c}}} >{out}/{i}.out 2>{out}/{i}.err; echo $? >{out}/{i}.rc\n" for i, c in enumerate(commands)
    )
    shell(script, env)
    results = [
        ((out / f"{i}.rc").read_text().strip(), (out / f"{i}.out").read_text(), (out / f"{i}.err").read_text())
        for i in range(len(commands))
    ]
    tune_run = None
    for command, (rc, stdout, stderr) in zip(commands, results, strict=True):
        where = f"{command}→ exit {rc}\n{stdout}\n{stderr}"
        assert "Traceback" not in stderr, where
        if command.startswith(f"curl -s localhost:{local_up.port}/ask"):
            assert rc == "0", where
            assert "pipe.2" in [c["doc_id"] for c in json.loads(stdout)["citations"]], where
        elif command.startswith("qid=$("):
            assert rc == "0" and stdout == "", where
        elif "/feedback" in command:
            assert rc == "0" and json.loads(stdout)["status"] == "recorded", where
        elif command.startswith(f"curl -s localhost:{local_up.port}/health"):
            assert rc == "0" and json.loads(stdout)["status"] == "ok", where
        elif command.startswith(f"{CLI} "):
            assert f"using the local stack at {local_up.endpoint}" in stderr, where
            if command.startswith(f"{CLI} tune --wait"):
                assert rc == "3" and "SKIPPED" in stdout, where  # one vote is far below RAG_TUNE_MIN_FEEDBACK
                found = re.search(r"^run (\S+): SKIPPED$", stdout, re.M)
                assert found, where
                tune_run = found.group(1)
            elif command.startswith(f"{CLI} runs"):
                assert rc == "0" and tune_run and tune_run[:26] in stdout, where
            elif command.startswith(f"{CLI} rollback"):
                assert rc == "0" and re.search(r"^live: model v\d+, index \S+$", stdout, re.M), where
            else:
                pytest.fail(f"the README runs a CLI command this test does not check: {command}")
        else:
            pytest.fail(f"the README runs a command this test does not check: {command}")
