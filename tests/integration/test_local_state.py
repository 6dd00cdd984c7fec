"""`make run` keeps its state across restarts: the bucket and the table are saved to a folder on stop and
restored into a fresh moto server on start."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from rag_autotune.adapters.aws import clear_clients
from rag_autotune.domain import VersionPair, Vote
from rag_autotune.local import stack
from rag_autotune.runtime import Runtime
from rag_autotune.settings import Settings


def test_state_survives_a_restart(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for var in ("AWS_ENDPOINT_URL", "MOTO_PORT"):
        monkeypatch.delenv(var, raising=False)
    suffix = uuid.uuid4().hex[:6]
    settings = Settings(bucket=f"state-{suffix}", table=f"state-{suffix}", cache_dir=tmp_path / "cache")
    folder = tmp_path / "state"
    vote = Vote(
        "q1",
        "open.2",
        "open.2#0",
        "up",
        1,
        "open a file",
        VersionPair("v0", "v0-c1"),
        1_700_000_000.0,
        embedding=bytes(range(256)) * 3,  # an older vote's query vector is a DynamoDB Binary: it must survive too
    )

    first = stack.MotoStack().start()
    try:
        clear_clients()
        assert stack.restore(settings, folder) == (0, 0)  # nothing saved yet: empty resources
        rt = Runtime(settings)
        rt.store.put_bytes("manifest.json", b'{"live": 1}')
        rt.store.put_bytes("models/v0/model.onnx", b"\x00" * 2048)
        assert rt.feedback.record_vote(vote, "a|q1|open.2|up", 3600)
        assert stack.save(settings, folder) == (2, 2)  # the vote and its dedupe marker
        # The minute-by-minute saves of `up`: what did not change is linked from the last save, not read again.
        assert stack.save(settings, folder) == (0, 0)
        rt.store.put_bytes("runs/r1.json", b"{}")
        assert stack.save(settings, folder) == (1, 0)
        assert rt.feedback.record_vote(replace(vote, query_id="q2"), "a|q2|open.2|up", 3600)
        assert stack.save(settings, folder) == (0, 4)
    finally:
        first.stop()

    second = stack.MotoStack().start()
    try:
        clear_clients()
        assert stack.restore(settings, folder) == (3, 4)  # each vote with its dedupe marker
        rt = Runtime(settings)
        assert rt.store.get_bytes("manifest.json") == b'{"live": 1}'
        assert rt.store.get_bytes("models/v0/model.onnx") == b"\x00" * 2048
        assert rt.feedback.votes() == [vote, replace(vote, query_id="q2")]
        assert rt.store.get_bytes("runs/r1.json") == b"{}"
    finally:
        second.stop()
        clear_clients()
