"""scripts/man_corpus.py: NAME parsing, body extraction, `.so` detection and group sampling."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "man_corpus.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("man_corpus", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mc = _load()

# What `groff -man -Tutf8 | col -bx` prints for a small page (header, NAME spanning 2 lines, footer).
RENDERED = """\
pipe(2)                          System Calls Manual                          pipe(2)



NAME
       pipe,  pipe2  -  create  pipe,
       with flags

SYNOPSIS
       #include <unistd.h>

       int pipe(int pipefd[2]);

DESCRIPTION
       pipe()  creates  a  pipe, a unidirectional data channel that
       can be used for interprocess communication.

   Notes
       See pipe(7).

Linux man-pages 6.03               2023-02-05                            pipe(2)
"""


def test_parse_name_line_splits_names_and_description() -> None:
    assert mc.parse_name_line("open, openat, creat - open and possibly create a file") == (
        ["open", "openat", "creat"],
        "open and possibly create a file",
    )
    # groff may render \- as U+2212; Perl module names contain '::' and hyphens without spaces
    assert mc.parse_name_line("Dpkg::Control \u2212 parse control-like info") == (
        ["Dpkg::Control"],
        "parse control-like info",
    )
    assert mc.parse_name_line("ctags-lang-inko -") is None  # empty description
    assert mc.parse_name_line("no separator here") is None


def test_parse_rendered_drops_name_header_and_footer() -> None:
    parsed = mc.parse_rendered(RENDERED)
    assert parsed is not None
    names, desc, body = parsed
    assert names == ["pipe", "pipe2"]
    assert desc == "create pipe, with flags"
    assert desc not in body and "System Calls Manual" not in body and "Linux man-pages" not in body
    assert body.split("\n\n") == [
        "SYNOPSIS\n#include <unistd.h>",
        "int pipe(int pipefd[2]);",
        "DESCRIPTION\npipe() creates a pipe, a unidirectional data channel that can be used for "
        "interprocess communication.",
        "Notes\nSee pipe(7).",
    ]
    assert mc.parse_rendered("SYNOPSIS\n       foo\n") is None  # no NAME section


def test_clean_rejoins_hyphenated_words_and_maps_dashes() -> None:
    assert mc.clean("the cre\u2010   ation of  user\u2010space \u2212\u2212flag") == (
        "the creation of user-space --flag"
    )


def test_is_redirect_only_for_pure_so_pages() -> None:
    assert mc.is_redirect('.\\" comment\n\n.so man3/printf.3\n')
    assert not mc.is_redirect(".TH X 3\n.SH NAME\nx \\- y\n.so man3/common.3\n")


def test_sample_groups_keeps_relevant_sets_whole_and_is_seeded() -> None:
    groups = {f"q{i}": [f"a{i}.2", f"b{i}.3"] if i % 3 == 0 else [f"a{i}.2"] for i in range(30)}
    picked = mc.sample_groups(groups, limit=15, seed=7)
    assert sum(len(groups[k]) for k in picked) == 15
    assert picked == mc.sample_groups(groups, limit=15, seed=7)
    assert picked != mc.sample_groups(groups, limit=15, seed=8)
    capped = mc.sample_groups(groups, limit=None, seed=0, section_limits={"3": 2})
    assert sum(1 for k in capped for i in groups[k] if i.endswith(".3")) == 2


def test_truncate_prefers_paragraph_boundary() -> None:
    text = "a" * 60 + "\n\n" + "b c " * 20
    assert mc.truncate(text, 70) == "a" * 60
    assert mc.truncate("short", 70) == "short"


OPEN_2 = Path("/usr/share/man/man2/open.2.gz")


@pytest.mark.skipif(
    not OPEN_2.exists() or not shutil.which("groff") or not shutil.which("col"),
    reason="needs man2/open.2.gz, groff and col",
)
def test_render_real_open_page() -> None:
    r = mc.render_page(OPEN_2)
    assert r is not None
    names, section, desc, body = r
    assert names[:2] == ["open", "openat"] and section == "2"
    assert desc == "open and possibly create a file"
    assert body.startswith("LIBRARY") and "O_CREAT" in body and "\nDESCRIPTION\n" in body
    assert desc not in body
