import json
from pathlib import Path

import pytest

from rag_autotune.chunking import chunk_document
from rag_autotune.corpus import load_documents
from rag_autotune.domain import Document
from rag_autotune.errors import IngestError


def test_short_document_is_one_chunk_with_stable_id() -> None:
    chunks = chunk_document(Document("open.2", "open(2)", "Open a file.\n\nReturns a descriptor."))
    assert [c.chunk_id for c in chunks] == ["open.2#0"]
    assert chunks[0].text == "Open a file. Returns a descriptor."


def test_long_document_is_split_within_size_with_overlap_and_same_ids_each_time() -> None:
    text = "\n\n".join(f"Paragraph {i} says something about file descriptors and pipes." * 3 for i in range(40))
    doc = Document("pipe.2", "pipe(2)", text)
    first, second = chunk_document(doc, 400, 80), chunk_document(doc, 400, 80)
    assert first == second
    assert len(first) > 5
    assert all(len(c.text) <= 400 for c in first)
    assert [c.chunk_id for c in first] == [f"pipe.2#{i}" for i in range(len(first))]
    # overlap: the start of each later chunk repeats words from the end of the one before
    assert first[1].text.split()[0] in first[0].text


def test_empty_body_still_gives_a_chunk() -> None:
    assert chunk_document(Document("x", "Title only", "   "))[0].text == "Title only"


def test_jsonl_reports_malformed_lines_with_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "title": "A", "text": "alpha"}),
                "{not json",
                json.dumps({"id": "b", "title": "B"}),
                json.dumps({"id": "a", "title": "dup", "text": "again"}),
                json.dumps(["list"]),
                json.dumps({"id": "c", "text": "gamma"}),
            ]
        )
    )
    docs, errors = load_documents(f)
    assert [d.doc_id for d in docs] == ["a", "c"]
    assert docs[1].title == "c"
    assert [e.split(":")[0] for e in errors] == [f"c.jsonl line {n}" for n in (2, 3, 4, 5)]
    assert "text" in errors[1] and "duplicate" in errors[2]


def test_folder_of_md_and_txt(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# Alpha guide\n\nbody")
    (tmp_path / "sub" / "b.txt").write_text("Beta notes\nmore")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    docs, errors = load_documents(tmp_path)
    assert [(d.doc_id, d.title) for d in docs] == [("a.md", "Alpha guide"), ("sub/b.txt", "Beta notes")]
    assert errors == []


def test_nothing_to_ingest_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError):
        load_documents(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(IngestError):
        load_documents(tmp_path / "empty.jsonl")
