"""BERT WordPiece tokenisation in pure Python, reading a Hugging Face `tokenizer.json`.

Why not the `tokenizers` wheel: it is a sizeable part of the ask Lambda's layer budget, and a query is a few
words, which pure Python tokenises in far less time than the encoder takes. The output is the wheel's, id for
id: the contract test compares both on the demo corpus plus edge cases (accents, CJK, control characters,
special tokens, long words, truncation).

Only what BERT-family models (all-MiniLM-L6-v2 and its tuned versions) use is supported: BertNormalizer,
BertPreTokenizer, WordPiece and the [CLS] … [SEP] template. Anything else is refused when loading, never
tokenised differently.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

# Rust's char::is_whitespace (Unicode White_Space), which the tokenizers crate uses; str.isspace() differs.
_WHITESPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))
)
_OTHER = frozenset(("Cc", "Cf", "Cn", "Co", "Cs"))  # Rust's char::is_other: what clean_text drops
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


class UnsupportedTokenizer(ValueError):
    """tokenizer.json describes something other than a BERT WordPiece tokenizer."""


# ASCII text (most of any English corpus) takes a fast path with the same result: clean_text drops the C0
# controls and DEL but turns \t \n \r into spaces, NFD and lowercasing are str.lower(), no CJK, and a word
# is a run of letters and digits or one punctuation character (every printable non-alphanumeric is one).
_ASCII_CLEAN = {c: None for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)} | {
    ord("\t"): " ",
    ord("\n"): " ",
    ord("\r"): " ",
}
_ASCII_WORD = re.compile(r"[0-9A-Za-z]+|[!-/:-@\[-`{-~]")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK)


def _is_punct(ch: str) -> bool:
    return (ch.isascii() and not ch.isalnum() and 33 <= ord(ch) <= 126) or unicodedata.category(ch)[0] == "P"


class WordPiece:
    """`encode(text) -> list[int]`: [CLS] + word pieces (truncated to max_length - 2) + [SEP]."""

    def __init__(self, config: dict[str, Any], max_length: int) -> None:
        model, norm, pre = config.get("model") or {}, config.get("normalizer") or {}, config.get("pre_tokenizer") or {}
        if model.get("type") != "WordPiece" or norm.get("type") != "BertNormalizer":
            raise UnsupportedTokenizer(f"need WordPiece + BertNormalizer, got {model.get('type')}/{norm.get('type')}")
        if pre.get("type") != "BertPreTokenizer":
            raise UnsupportedTokenizer(f"need BertPreTokenizer, got {pre.get('type')}")
        self._vocab: dict[str, int] = model["vocab"]
        self._unk = self._vocab[model.get("unk_token", "[UNK]")]
        self._prefix: str = model.get("continuing_subword_prefix", "##")
        self._max_chars = int(model.get("max_input_chars_per_word", 100))
        self._clean = bool(norm.get("clean_text", True))
        self._chinese = bool(norm.get("handle_chinese_chars", True))
        self._lower = bool(norm.get("lowercase", True))
        strip = norm.get("strip_accents")
        self._strip_accents = self._lower if strip is None else bool(strip)
        self._cls, self._sep = self._vocab["[CLS]"], self._vocab["[SEP]"]
        self._max_length = int(max_length)
        # Added tokens that skip normalisation are matched in the raw text first, as the Rust crate does.
        added = {t["content"]: int(t["id"]) for t in config.get("added_tokens") or [] if not t.get("normalized")}
        self._added = added
        self._added_re = (
            re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True))) if added else None
        )
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: Path, max_length: int) -> WordPiece:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), max_length)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        start = 0
        if self._added_re is not None:
            for m in self._added_re.finditer(text):
                ids += self._segment(text[start : m.start()])
                ids.append(self._added[m.group()])
                start = m.end()
        ids += self._segment(text[start:])
        return [self._cls, *ids[: max(0, self._max_length - 2)], self._sep]

    # ------------------------------------------------------------------ steps, in the crate's order

    def _segment(self, text: str) -> list[int]:
        ids: list[int] = []
        if text.isascii() and self._clean:
            text = text.translate(_ASCII_CLEAN)
            words = _ASCII_WORD.findall(text.lower() if self._lower else text)
        else:
            words = self._words(self._normalise(text))
        for word in words:
            ids += self._pieces(word)
        return ids

    def _normalise(self, text: str) -> str:
        if self._clean:
            text = "".join(
                " " if ch in _WHITESPACE else ch
                for ch in text
                if ch not in ("\0", "\ufffd") and (ch in "\t\n\r" or unicodedata.category(ch) not in _OTHER)
            )
        if self._chinese:
            text = "".join(f" {ch} " if _is_cjk(ord(ch)) else ch for ch in text)
        if self._strip_accents:
            text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
        if self._lower:
            text = "".join(ch.lower() for ch in text)  # per character, as Rust's (no final-sigma rule)
        return text

    @staticmethod
    def _words(text: str) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        for ch in text:
            if ch in _WHITESPACE:
                if current:
                    words.append("".join(current))
                    current = []
            elif _is_punct(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
        return words

    def _pieces(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if len(word) > self._max_chars:
            return [self._unk]
        out: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else self._prefix + word[start:end]
                found = self._vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                out = [self._unk]
                break
            out.append(found)
            start = end
        if len(self._cache) < 100_000:
            self._cache[word] = out
        return out
