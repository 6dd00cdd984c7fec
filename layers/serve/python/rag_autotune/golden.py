"""The golden set: queries with known answers that the smoke gate must not get worse on (golden/golden.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ArtifactNotFound, InvalidInput
from .ports import ArtifactStore

GOLDEN_KEY = "golden/golden.jsonl"


def _valid(row: object, where: str) -> dict[str, object]:
    if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
        raise InvalidInput(f"{where}: need a non-empty string 'query'")
    rel = row.get("relevant")
    if not isinstance(rel, list) or not rel or not all(isinstance(d, str) and d for d in rel):
        raise InvalidInput(f"{where}: need 'relevant', a non-empty list of doc ids")
    return {"query": row["query"].strip(), "relevant": rel}


def add_golden(
    store: ArtifactStore, *, query: str | None = None, relevant: list[str] | None = None, path: str | None = None
) -> int:
    """Append (or replace, by query text) golden queries; returns the size of the set."""
    new: list[dict[str, object]] = []
    if path:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    new.append(_valid(json.loads(line), f"{path} line {n}"))
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path} line {n}: invalid JSON ({exc.msg})") from exc
    if query is not None:
        new.append(_valid({"query": query, "relevant": relevant or []}, "--query"))
    if not new:
        raise InvalidInput("give --query with --relevant, or --file")
    try:
        rows = [json.loads(x) for x in store.get_bytes(GOLDEN_KEY).decode().splitlines() if x.strip()]
    except ArtifactNotFound:
        rows = []
    by_query = {r["query"]: r for r in rows}
    by_query.update({str(r["query"]): r for r in new})
    body = "".join(json.dumps(r) + "\n" for r in by_query.values())
    store.put_bytes(GOLDEN_KEY, body.encode(), "application/x-ndjson")
    return len(by_query)
