"""The readable sentences of a passage. Chunking flattens each document to one line, so a man page's section
headings (SYNOPSIS, DESCRIPTION, …) sit inline in the text: the passage is cut at them, then into sentences,
and what is not prose is dropped (synopsis, code, prototypes, option and error tables, reference lists)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADINGS = (
    "NAME|LIBRARY|SYNOPSIS|CONFIGURATION|DESCRIPTION|OPTIONS|EXIT STATUS|RETURN VALUE|ERRORS|ENVIRONMENT|FILES|"
    "ATTRIBUTES|VERSIONS|STANDARDS|CONFORMING TO|HISTORY|NOTES|CAVEATS|BUGS|EXAMPLES?|AUTHORS?|REPORTING BUGS|"
    "COPYRIGHT|SEE ALSO|COLOPHON"
)
_HEADING = re.compile(rf"(?:{_HEADINGS})(?![\w-])")
# A heading word is also used in prose ("see NOTES below", "the SYNOPSIS is approximate"). It counts as a
# heading when a section body visibly starts after it (a capitalised word, `#include`, `name(`), or when it
# does not follow a lowercase word, a comma or an opening bracket and is not followed by punctuation.
_BODY_FOLLOWS = re.compile(r" (?:[A-Z][a-z]|#|[a-z_]\w*\()")
_PUNCT_FOLLOWS = re.compile(r" ?[.,;:)!\"'*]")
# Sections whose text is never an answer: how to link, declarations, attribute tables, standards lists,
# references.
SKIPPED_SECTIONS = frozenset(
    {
        "LIBRARY",
        "SYNOPSIS",
        "ATTRIBUTES",
        "STANDARDS",
        "CONFORMING TO",
        "SEE ALSO",
        "COLOPHON",
        "AUTHOR",
        "AUTHORS",
        "COPYRIGHT",
        "REPORTING BUGS",
    }
)

# Sentence boundaries, at a space (the text is whitespace-normalised first): after . ! ? (maybe closing a
# bracket or quote) before anything but a lowercase word, or before `name(` / `name[` (man pages start
# sentences with "pipe() creates …"), but not after "e.g."-like abbreviations; after a colon that opens a
# table entry ("… flags: O_CLOEXEC Set …"). Subsection titles have no full stop, so they also end where a
# sentence visibly starts: at a capitalised function word after a lowercase word ("File descriptor sets The
# principal …") or at `name() verb` after `name()` ("openlog() openlog() opens …"). List bullets are cut apart
# before that. Each alternative starts with the space, which keeps the scan cheap.
_TABLE_TERM = r"-{1,2}[A-Za-z]|[A-Z][A-Z0-9]*_[A-Z0-9_]|E[A-Z0-9]{2,}\b"
_OPENER = r"(?:The|A|An|On|In|If|To|As|This|These|When|For|Each|Since|After|By|All|Most|Many|Some|It|Note) "
_BOUNDARY = re.compile(
    r" (?:"
    r"(?:(?<=[.!?] )|(?<=[.!?][)\"'] ))(?<!\be\.g\. )(?<!\bi\.e\. )(?<!\bcf\. )(?<!\bvs\. )(?=[^a-z ]|[a-z_]\w*[(\[])"
    rf"|(?<=: )(?={_TABLE_TERM})"
    rf"|(?<=[a-z0-9)] )(?={_OPENER})"
    r"|(?<=\w\(\) )(?=[a-z_]\w*\(\) [a-z])"
    r")"
)

# Code: preprocessor lines, comments, braces, C operators and box-drawing table rules, looked for only where
# one of their characters is; and prototypes ("int pipe(int pipefd[2]);" but not a prose "see pipe(7);"),
# looked for only where there is a ";".
_CODE_CHAR = re.compile(r"[#*{}|&=>│┌┐└┘├┤┬┴┼─]")
_CODE = re.compile(
    r"#\s*(?:include|define|if|ifdef|ifndef|endif|undef)\b|/\*|\*/|[{}]|\|\||&&|[=!<>]=|->|[│┌┐└┘├┤┬┴┼─]"
)
_PROTOTYPE = re.compile(r"\b[A-Za-z_]\w*[\s*]+[A-Za-z_]\w*\s*\((?!\d*\))[^()]*\)\s*;")
# A table entry: an option, a path, a constant or error name, or `NAME()`/`NAME` followed by a capitalised
# description ("O_CLOEXEC Set …", "EFAULT pipefd is …", "CPU_ZERO() Clears …", "SIGPIPE Broken pipe").
_TABLE_ENTRY = re.compile(rf"(?:{_TABLE_TERM}|/\S|(?:[A-Za-z_]\w*\(\)|[A-Z][A-Z0-9]+)\s+(?:\([^)]*\)\s+)?[A-Z][a-z])")
_SENTENCE_ENDS = (".", "!", "?", ".)", "!)", "?)", '."', '!"', '?"', ".'", "!'", "?'")
_STARTS_NAME = re.compile(r"[a-z_]\w*[(\[]")
# Three plain lowercase words: fewer is a fragment ("No errors occur.", "POSIX.1-2008.").
_THREE_PLAIN_WORDS = re.compile(r"\b[a-z]{2,}\b.*?\b[a-z]{2,}\b.*?\b[a-z]{2,}\b")


@dataclass(frozen=True)
class Sentence:
    text: str
    section: str  # the heading it follows ("" before the first heading, or in text without any)
    position: int  # its order among the passage's sentences


def _is_heading(text: str, start: int, end: int) -> bool:
    prev = text[start - 1] if start else " "
    if prev.isalnum() or prev in "_-":  # part of a longer name (RENAME, O_NAME)
        return False
    if _BODY_FOLLOWS.match(text, end):
        return True
    after_word = start >= 2 and prev == " " and (text[start - 2].islower() or text[start - 2] in ',("')
    return prev not in '("' and not after_word and not _PUNCT_FOLLOWS.match(text, end)


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) pairs of whitespace-normalised text, in order; text before the first heading has
    heading ""."""
    out: list[tuple[str, str]] = []
    heading, start = "", 0
    for m in _HEADING.finditer(text):
        if _is_heading(text, m.start(), m.end()):
            out.append((heading, text[start : m.start()]))
            heading, start = m.group(), m.end()
    out.append((heading, text[start:]))
    return [(h, body.strip()) for h, body in out if body.strip()]


def split_sentences(text: str) -> list[str]:
    """Sentences (and the fragments between them) of whitespace-normalised text."""
    return [s for part in text.split("•") for s in (p.strip() for p in _BOUNDARY.split(part.strip())) if s]


def is_prose(sentence: str) -> bool:
    """A whole sentence (capitalised or starting with `name(`, ending with . ! or ?) with a few plain
    words, that is neither code nor a table entry."""
    return (
        sentence.endswith(_SENTENCE_ENDS)
        and (not sentence[0].islower() or _STARTS_NAME.match(sentence) is not None)
        and _TABLE_ENTRY.match(sentence) is None
        and (_CODE_CHAR.search(sentence) is None or _CODE.search(sentence) is None)
        and (";" not in sentence or _PROTOTYPE.search(sentence) is None)
        and _THREE_PLAIN_WORDS.search(sentence) is not None
    )


def prose_sentences(text: str) -> list[Sentence]:
    """The passage's prose sentences, in order, outside the sections that are never an answer."""
    out: list[Sentence] = []
    position = 0
    for heading, body in sections(" ".join(text.split())):
        if heading in SKIPPED_SECTIONS:
            continue
        for s in split_sentences(body):
            if is_prose(s):
                out.append(Sentence(s, heading, position))
            position += 1
    return out
