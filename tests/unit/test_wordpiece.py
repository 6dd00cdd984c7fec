"""The serving tokenizer (pure Python) gives the `tokenizers` wheel's ids, id for id: on the demo corpus, cut
into the chunks that are really embedded, and on the inputs where BERT normalisation is subtle."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from rag_autotune.adapters.wordpiece import UnsupportedTokenizer, WordPiece
from rag_autotune.chunking import chunk_document, embed_text
from rag_autotune.domain import Document
from rag_autotune.training.export import base_model_path

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = base_model_path() / "tokenizer.json"

EDGE_CASES = [
    "",
    "   ",
    "open and possibly create a file",
    "Crème brûlée à la carte — naïve café",  # accents stripped (lowercase implies strip_accents)
    "ΣΊΣΥΦΟΣ final sigma",  # per-character lowercasing, no final-sigma rule
    "İstanbul ǅ ﬁ ß",  # multi-character lowercase mappings and ligatures
    "汉字テスト한국어 mixed 中文 text",  # CJK ideographs are split one by one; kana/hangul are not
    "tab\tnew\nline\rcr\x0bvt\x0cff\x85nel\u00a0nbsp\u2003em\u3000ideo",
    "zero\x00width\u200bjoiner\u200dsoft\u00adhyphen\ufffdreplacement\x7fdel",
    "emoji 😀👍🏽 and private \ue000 use",
    "[CLS] inside [SEP] text [MASK] and [UNK] [PAD]",
    "x[MASK]y",
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101,  # max_input_chars_per_word
    "punctuation!?.,;:'\"()[]{}<>/\\|@#$%^&*-_=+~`",
    "unicode punctuation «quoted» ¿qué? ¡sí! “smart” ‘quotes’ … – —",
    "snake_case camelCase kebab-case file.name.ext 3.14159 1,000,000 0x7fff",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
]


def wheel(max_length: int) -> Tokenizer:
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


@pytest.mark.parametrize("max_length", [256, 16])
def test_edge_cases_match_the_wheel(max_length: int) -> None:
    ours, theirs = WordPiece.from_file(TOKENIZER, max_length), wheel(max_length)
    for text in EDGE_CASES:
        assert ours.encode(text) == theirs.encode(text).ids, text


def test_demo_corpus_chunks_match_the_wheel() -> None:
    ours, theirs = WordPiece.from_file(TOKENIZER, 256), wheel(256)
    texts: list[str] = []
    for line in (REPO / "demo" / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        texts.append(doc["title"])
        texts += [embed_text(c) for c in chunk_document(Document(doc["id"], doc["title"], doc["text"]))]
    assert len(texts) > 1000
    mismatched = [t[:80] for t in texts if ours.encode(t) != theirs.encode(t).ids]
    assert mismatched == []


def test_every_ascii_character_matches_the_wheel() -> None:
    """ASCII text takes a fast path: each of the 128 characters, alone and between words, and seeded random
    mixes of them (controls, DEL, punctuation runs, mixed case) must still give the wheel's ids."""
    ours, theirs = WordPiece.from_file(TOKENIZER, 512), wheel(512)
    rng = random.Random(13)
    texts = [chr(c) for c in range(128)] + [f"Ab{chr(c)}cD 9{chr(c)}" for c in range(128)]
    texts += ["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(1, 200))) for _ in range(300)]
    mismatched = [repr(t[:40]) for t in texts if ours.encode(t) != theirs.encode(t).ids]
    assert mismatched == []


def test_other_tokenizer_kinds_are_refused() -> None:
    config = json.loads(TOKENIZER.read_text())
    config["model"]["type"] = "BPE"
    with pytest.raises(UnsupportedTokenizer):
        WordPiece(config, 256)
