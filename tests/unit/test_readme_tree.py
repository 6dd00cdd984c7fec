"""The README's "How it fits together" names what the tree holds: every path and module it names exists, every
module of the package is named, and each subpackage's line names each of its modules."""

from __future__ import annotations

import re

from rag_autotune.paths import REPO

PACKAGE = REPO / "layers" / "serve" / "python" / "rag_autotune"
INDENT = " " * 30  # where a description's continuation lines start


def _block() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## How it fits together") :]
    return section.split("```\n")[1].splitlines()


def _package_lines() -> dict[str, str]:
    """Each entry under rag_autotune/ (its first words, e.g. "adapters/" or "cli.py paths.py") → its text."""
    lines = _block()
    start = lines.index("layers/serve/python/rag_autotune/") + 1
    entries: dict[str, str] = {}
    name = ""
    for line in lines[start:]:
        if line.startswith(INDENT):
            entries[name] += " " + line.strip()
        elif line.startswith("  "):
            name, _, text = line.strip().partition("  ")
            entries[name] = text
        else:
            break
    return entries


def test_every_path_the_block_names_exists() -> None:
    roots = [line.split()[0] for line in _block() if line and not line.startswith(" ")]
    missing = [p for p in roots if not any(REPO.glob(p.rstrip("/")))]
    assert roots and missing == []


def test_every_module_and_subpackage_of_the_package_is_named_and_exists() -> None:
    named = {word for entry in _package_lines() for word in entry.split()}
    named |= {m for text in _package_lines().values() for m in re.findall(r"\b\w+\.py\b", text)}
    on_disk = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    on_disk |= {p.parent.name + "/" for p in PACKAGE.glob("*/__init__.py")}
    assert sorted(named - on_disk) == [] and sorted(on_disk - named) == []


def test_each_subpackage_line_names_each_of_its_modules() -> None:
    unnamed = {}
    for entry, text in _package_lines().items():
        if entry.endswith("/"):
            words = set(re.findall(r"\w+", text))
            stems = {p.stem for p in (PACKAGE / entry).glob("*.py") if p.name != "__init__.py"}
            if stems - words:
                unnamed[entry] = sorted(stems - words)
    assert unnamed == {}
