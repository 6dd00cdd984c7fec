"""scripts/family_corpus.py: questions re-judged by near-identical descriptions, families kept as distractors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load() -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))  # it imports man_corpus beside it
    try:
        spec = importlib.util.spec_from_file_location("family_corpus", SCRIPTS / "family_corpus.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(SCRIPTS))


fc = _load()

PAGES = {
    "strtol.3": "convert a string to a long integer",
    "atoi.3": "convert a string to an integer",
    "strtoul.3": "convert a string to an unsigned long integer",
    "strcpy.3": "copy a string",
    "strcat.3": "concatenate two strings",
    "setxattr.2": "set an extended attribute value",
    "getxattr.2": "get an extended attribute value",
    "pipe.2": "create pipe",
}


def _inputs() -> tuple[list[dict[str, str]], list[dict[str, object]]]:
    docs = [{"id": i, "title": i, "text": f"text of {i}"} for i in PAGES]
    queries = [{"query": d, "relevant": [i]} for i, d in PAGES.items()]
    return docs, queries


def test_near_identical_descriptions_share_their_relevant_pages() -> None:
    docs, queries = fc.families(*_inputs())
    judged = {q["query"]: q["relevant"] for q in queries}
    assert judged["convert a string to a long integer"] == ["atoi.3", "strtol.3", "strtoul.3"]
    assert "set an extended attribute value" not in judged  # "get" is another verb: one relevant page, dropped
    assert "copy a string" not in judged
    # strcpy and strcat are the str family's near-duplicate distractors; pipe(2) is in no family kept
    assert [d["id"] for d in docs] == ["atoi.3", "strcat.3", "strcpy.3", "strtol.3", "strtoul.3"]


def test_family_is_the_name_up_to_its_first_underscore_else_its_first_three_letters() -> None:
    assert fc.family("pthread_attr_setstack.3") == "pthread"
    assert fc.family("TAILQ_INSERT.3") == "tailq"
    assert fc.family("strncpy.3") == "str" and fc.family("wcsncpy.3") == "wcs"
