"""PDFs built byte by byte for the reader tests and the ingest bench: text pages, a stream that inflates far
past any limit, an encrypted copy. No PDF writer library needed, and the text of each page is known."""

from __future__ import annotations

import io
import zlib


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _stream(data: bytes, compress: bool) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        return f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
    return f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def make_pdf(pages: list[str], *, compress: bool = True, contents: list[bytes] | None = None) -> bytes:
    """One page per string (lines split on newlines, Helvetica). `contents` replaces the content streams."""
    shown = (" ".join(f"({_escape(ln)}) Tj T*" for ln in text.split("\n")) for text in pages)
    raw = contents or [f"BT /F1 11 Tf 72 720 Td 14 TL {lines} ET".encode() for lines in shown]
    n = len(raw)
    font = 3 + 2 * n
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    objs.append(f"<< /Type /Pages /Kids [{' '.join(f'{3 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode())
    for i, data in enumerate(raw):
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objs.append(_stream(data, compress))
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _assemble(objs)


def _assemble(objs: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n".encode() + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def bomb_pdf(inflated_mb: int = 200) -> bytes:
    """One page whose content stream is ~200 KB deflated and inflated_mb MB inflated (spaces)."""
    zeros = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    data = b"".join(zeros.compress(chunk) for _ in range(inflated_mb)) + zeros.flush()
    head = f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode()
    return _assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            head + data + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def encrypted_pdf(text: str, password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text]))))
    writer.encrypt(user_password=password, owner_password=password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
