"""The offline extractive answer: short, cited, prose only. Unit tests of the splitter and filters on crafted
text, then 20 natural questions answered from real man-page chunks of the demo corpus."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from rag_autotune.chunking import chunk_document
from rag_autotune.corpus import load_documents
from rag_autotune.domain import Chunk
from rag_autotune.generate import ExtractiveGenerator, Passage, _shared, best_sentence, terms
from rag_autotune.prose import is_prose, prose_sentences, sections, split_sentences

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = Path(__file__).with_name("answer_questions.jsonl")

# One sentence and its citation; the answer is a run of them separated by single spaces.
CITED = re.compile(r"(.+?) \[(\d+)\](?: |$)")
PROTOTYPE = re.compile(r"\b\w+[\s*]+\w+\s*\([^()]*\)\s*;")
HEADING_START = re.compile(r"(?:DESCRIPTION|RETURN VALUE|ERRORS|NOTES|VERSIONS|BUGS|EXAMPLES|ATTRIBUTES|STANDARDS)\b")

PIPE_CHUNK = (
    "LIBRARY Standard C library (libc, -lc) SYNOPSIS #include <unistd.h> int pipe(int pipefd[2]); "
    "#define _GNU_SOURCE /* See feature_test_macros(7) */ #include <fcntl.h> int pipe2(int pipefd[2], int flags); "
    "DESCRIPTION pipe() creates a pipe, a unidirectional data channel that can be used for interprocess "
    "communication. pipefd[0] refers to the read end of the pipe. The following values can be bitwise ORed in "
    "flags to obtain different behavior: O_CLOEXEC Set the close-on-exec (FD_CLOEXEC) flag on the two new file "
    "descriptors. RETURN VALUE On success, zero is returned. ERRORS EFAULT pipefd is not valid. "
    "SEE ALSO fork(2), read(2), write(2)"
)


# ---- splitter and filters on crafted text ------------------------------------------------------------------


def test_inline_headings_cut_the_text_into_sections() -> None:
    got = sections(PIPE_CHUNK)
    assert [h for h, _ in got] == ["LIBRARY", "SYNOPSIS", "DESCRIPTION", "RETURN VALUE", "ERRORS", "SEE ALSO"]
    assert dict(got)["DESCRIPTION"].startswith("pipe() creates a pipe")


def test_heading_words_in_prose_are_not_headings() -> None:
    text = "Its size is undefined; see NOTES below. The SYNOPSIS is approximate (see BUGS). DESCRIPTION The end."
    assert [h for h, _ in sections(text)] == ["", "DESCRIPTION"]


def test_a_heading_after_a_lowercase_word_counts_when_a_section_body_follows() -> None:
    text = "Feature test macros: none DESCRIPTION chroot() changes the root directory of the calling process."
    assert sections(text)[-1] == ("DESCRIPTION", "chroot() changes the root directory of the calling process.")


def test_sentences_split_before_a_function_name_but_not_after_e_g() -> None:
    text = "The array is used, e.g. for reading. pipe() creates a pipe. pipefd[1] is the write end."
    assert split_sentences(text) == [
        "The array is used, e.g. for reading.",
        "pipe() creates a pipe.",
        "pipefd[1] is the write end.",
    ]


def test_subsection_titles_without_a_full_stop_are_split_off() -> None:
    text = (
        "File descriptor sets The principal arguments are three sets. openlog() openlog() opens a connection. "
        "(Since Linux 3.7) The kernel was configured so. Reading events To determine what events occurred, read."
    )
    assert split_sentences(text) == [
        "File descriptor sets",
        "The principal arguments are three sets.",
        "openlog()",
        "openlog() opens a connection.",
        "(Since Linux 3.7)",
        "The kernel was configured so.",
        "Reading events",
        "To determine what events occurred, read.",
    ]


def test_table_entries_and_bullets_are_split_off() -> None:
    text = "Values can be ORed in flags: O_DIRECT Create a pipe in packet mode. Note: • Writes are split up."
    assert split_sentences(text) == [
        "Values can be ORed in flags:",
        "O_DIRECT Create a pipe in packet mode.",
        "Note:",
        "Writes are split up.",
    ]


@pytest.mark.parametrize(
    "sentence",
    [
        "#include <unistd.h> int pipe(int pipefd[2]); The call creates a pipe.",
        "int pipe2(int pipefd[2], int flags); It creates a pipe with flags.",
        "struct fd_pair { long fd[2]; }; It is returned on some machines.",
        "Use it as x || y when the result is needed.",
        "O_CLOEXEC Set the close-on-exec flag on the new descriptors.",
        "O_DIRECT (since Linux 3.4) Create a pipe that performs I/O in packet mode.",
        "EFAULT pipefd is not valid at all.",
        "CPU_ZERO() Clears set, so that it contains no CPUs.",
        "--all do not ignore entries starting with a dot.",
        "│fabs(), fabsf() │ Thread safety │ MT-Safe │ and the rest.",
        "the end of a sentence cut by the chunker.",
        "The start of a sentence cut by the chunker and never",
        "No errors occur.",
    ],
)
def test_what_is_not_prose(sentence: str) -> None:
    assert not is_prose(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "pipe() creates a pipe, a unidirectional data channel.",
        "pipefd[0] refers to the read end of the pipe.",
        "The constant PIPE_BUF is defined in <limits.h> on every system.",
        "For further details, see pipe(7); the rest is in fork(2).",
        "POSIX says that the result is undefined.",
        "(A read(2) that specifies a buffer size of zero is a no-op, and returns 0.)",
    ],
)
def test_what_is_prose(sentence: str) -> None:
    assert is_prose(sentence)


def test_prose_sentences_skip_synopsis_error_table_and_references() -> None:
    got = [(s.section, s.text) for s in prose_sentences(PIPE_CHUNK)]
    assert got == [
        (
            "DESCRIPTION",
            "pipe() creates a pipe, a unidirectional data channel that can be used for interprocess communication.",
        ),
        ("DESCRIPTION", "pipefd[0] refers to the read end of the pipe."),
        ("RETURN VALUE", "On success, zero is returned."),
    ]


def test_best_sentence_is_prose_that_shares_the_question_terms() -> None:
    assert best_sentence("how do I create a pipe", PIPE_CHUNK).startswith("pipe() creates a pipe")
    assert best_sentence("the read end", PIPE_CHUNK) == "pipefd[0] refers to the read end of the pipe."
    assert best_sentence("anything", "int pipe(int fd[2]); SEE ALSO read(2)") == ""


def test_terms_match_plurals_and_third_person() -> None:
    assert terms("creates pipes") == terms("create pipe") == {"create", "pipe"}
    assert terms("process access") == {"process", "access"}


@pytest.mark.parametrize(
    "text", ["Pipes are created by pipe().", "It creates a pipe.", "The process accesses processes.", "No match."]
)
def test_shared_terms_count_as_the_term_sets_do(text: str) -> None:
    for query in ("how do I create a pipe", "process access", "the pipes"):
        assert _shared(terms(query), text) == len(terms(query) & terms(text))


def test_the_answer_is_prose_sentences_of_the_passages_in_order_each_cited() -> None:
    passages = [
        Passage(1, "pipe(2)", PIPE_CHUNK),
        Passage(2, "pipe(7)", "SYNOPSIS x DESCRIPTION Pipes provide a one-way channel between processes."),
        Passage(3, "fifo(7)", "DESCRIPTION A FIFO special file is similar to a pipe, but has a name."),
    ]
    gen = ExtractiveGenerator()
    pieces = list(gen.stream("how do I create a pipe", passages))
    assert pieces == [
        "pipe() creates a pipe, a unidirectional data channel that can be used for interprocess communication. [1]",
        " Pipes provide a one-way channel between processes. [2]",
        " A FIFO special file is similar to a pipe, but has a name. [3]",
    ]
    assert gen.answer("how do I create a pipe", passages) == "".join(pieces)


def test_other_passages_give_sentences_only_when_they_share_a_term() -> None:
    passages = [Passage(1, "pipe(2)", PIPE_CHUNK), Passage(2, "x(7)", "DESCRIPTION Something else entirely here.")]
    out = ExtractiveGenerator().answer("create a pipe", passages)
    assert out.startswith("pipe() creates a pipe") and "[2]" not in out


def test_a_sentence_that_says_what_it_is_about_comes_before_one_opening_on_a_pronoun() -> None:
    text = "DESCRIPTION It sets the file mode creation mask. The umask() call sets the file mode creation mask."
    assert (
        best_sentence("set the file mode creation mask", text) == "The umask() call sets the file mode creation mask."
    )


def test_the_top_passage_opens_the_answer_even_without_a_shared_term() -> None:
    passages = [Passage(4, "fabs(3)", "SYNOPSIS double fabs(double x); DESCRIPTION These return the magnitude of x.")]
    assert ExtractiveGenerator().answer("absolute value", passages) == "These return the magnitude of x. [4]"


def test_the_answer_keeps_to_its_length_and_cuts_only_an_overlong_opening_sentence() -> None:
    long = "The pipe " + " ".join(["carries data"] * 60) + "."
    passages = [Passage(1, "a", f"DESCRIPTION {long}"), Passage(2, "b", "DESCRIPTION A pipe has two ends here.")]
    out = ExtractiveGenerator(max_chars=200).answer("pipe", passages)
    assert len(out) <= 200
    assert out.startswith("The pipe carries data") and "… [1]" in out and "carries data data" not in out
    gen = ExtractiveGenerator(max_chars=120)
    short = [Passage(1, "a", "DESCRIPTION A pipe has two ends here. " + long), passages[1]]
    assert gen.answer("pipe", short) == "A pipe has two ends here. [1]"  # the overlong sentence is not cut in


def test_no_more_than_max_sentences() -> None:
    text = "DESCRIPTION " + " ".join(f"The pipe number {i} is open for you." for i in range(10))
    out = ExtractiveGenerator(max_sentences=3).answer("pipe", [Passage(1, "p", text)])
    assert len(CITED.findall(out)) == 3


def test_without_prose_the_answer_points_at_the_top_passage() -> None:
    out = ExtractiveGenerator().answer("pipe", [Passage(2, "pipe(2)", "SYNOPSIS int pipe(int fd[2]);")])
    assert out == "See pipe(2). [2]"


# ---- 20 natural questions over the demo corpus --------------------------------------------------------------


@cache
def _demo_chunks() -> dict[str, list[Chunk]]:
    docs, _ = load_documents(REPO / "demo" / "corpus.jsonl")
    return {d.doc_id: chunk_document(d) for d in docs}


def fixture_passages() -> list[tuple[str, list[Passage]]]:
    """For each question, three real chunks as /ask would cite them (one per document). Passage 1 is the first
    chunk of the relevant page, with LIBRARY and SYNOPSIS inline (the demo's /ask ranks pipe.2's first for
    "how do I create a pipe"); passages 2 and 3 stand in for the encoder's next two documents: the chunks of
    other pages that share the most terms with the question."""
    chunks = _demo_chunks()
    chunk_terms = {c.chunk_id: terms(c.text) for cs in chunks.values() for c in cs}
    out = []
    for line in QUESTIONS.read_text().splitlines():
        item = json.loads(line)
        q = terms(item["query"])
        top = chunks[item["relevant"]][0]
        others = sorted(
            (max(cs, key=lambda c: len(q & chunk_terms[c.chunk_id])) for d, cs in chunks.items() if d != top.doc_id),
            key=lambda c: (-len(q & chunk_terms[c.chunk_id]), c.chunk_id),
        )[:2]
        out.append((item["query"], [Passage(i + 1, c.title, c.text) for i, c in enumerate([top, *others])]))
    return out


def test_the_fixture_has_20_questions_each_with_three_passages() -> None:
    got = fixture_passages()
    assert len(got) == 20 and all(len(ps) == 3 for _, ps in got)


@pytest.mark.parametrize("query,passages", fixture_passages(), ids=lambda v: v if isinstance(v, str) else "")
def test_demo_answers_are_short_cited_prose(query: str, passages: list[Passage]) -> None:
    answer = ExtractiveGenerator().answer(query, passages)
    assert answer and len(answer) <= 400
    cited = CITED.findall(answer)
    assert " ".join(f"{s} [{n}]" for s, n in cited) == answer  # every sentence ends with its citation
    assert 1 <= len(cited) <= 3
    assert {int(n) for _, n in cited} <= {p.n for p in passages}
    for sentence, _ in cited:
        assert not re.search(r"[.!?] [A-Z]", sentence[:-1]), sentence  # one sentence, not several
        assert sentence[-1] in ".!?)…", sentence
    for banned in ("SYNOPSIS", "LIBRARY", "#include", "#define", "/*"):
        assert banned not in answer
    for sentence, _ in cited:
        assert not HEADING_START.match(sentence), sentence
    assert not PROTOTYPE.search(answer), answer
