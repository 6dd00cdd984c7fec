"""PDF: the text of each page (pypdf), one part per page, so that a citation names its page.

Limits: pypdf's own decompression caps are set to the text limit for the read, so a stream that inflates
to gigabytes stops at the cap; the page count is checked before any page is read, and the time cap and the
text cap between pages."""

from __future__ import annotations

import io

from ..domain import Document, Part
from .limits import MB, ReadLimits, Skipped


def _pypdf():  # type: ignore[no-untyped-def]
    try:
        import pypdf
    except ImportError as exc:  # pragma: no cover - the ingest extra is missing
        raise ImportError("reading PDF needs the ingest extra: pip install 'rag-autotune[ingest]'") from exc
    return pypdf


def _caps(cap: int) -> dict[str, int]:
    """Every decompressed-size cap pypdf has, at our limit (its defaults are 75 MB each, per stream)."""
    return {
        "zlib_maximum_output_length": cap,
        "lzw_maximum_output_length": cap,
        "run_length_maximum_output_length": cap,
        "jbig2_maximum_output_length": cap,
        "brotli_maximum_output_length": cap,
        "array_based_stream_maximum_output_length": cap,
        "maximum_declared_stream_length": cap,
        "image_maximum_buffer_size": cap,
        "stream_decoding_work_maximum_length": cap,
        "xfa_decoding_work_maximum_length": cap,
    }


def read_pdf(name: str, data: bytes, limits: ReadLimits) -> Document:
    pypdf = _pypdf()
    from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

    deadline = limits.deadline()
    cap = limits.max_text_bytes
    try:
        with pypdf.apply_configuration(**_caps(cap)):
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):  # an owner password alone does not hide the text
                raise Skipped("encrypted PDF (needs a password)")
            count = len(reader.pages)
            if count > limits.max_pdf_pages:
                raise Skipped(f"{count} pages is over the {limits.max_pdf_pages}-page limit (RAG_INGEST_MAX_PDF_PAGES)")
            pages: list[Part] = []
            size = 0
            for number, page in enumerate(reader.pages, start=1):
                deadline.check()
                text = (page.extract_text() or "").strip()
                size += len(text.encode("utf-8"))
                if size > cap:
                    raise Skipped(f"text over the {cap / MB:g} MB limit (RAG_INGEST_MAX_TEXT_MB)")
                if text:
                    pages.append(Part(text, page=number))
            meta = reader.metadata
            meta_title = str(meta.title).strip() if meta and meta.title else ""
    except Skipped:
        raise
    except LimitReachedError as exc:
        raise Skipped(f"a stream inflates past the {cap / MB:g} MB limit (RAG_INGEST_MAX_TEXT_MB)") from exc
    except FileNotDecryptedError as exc:
        raise Skipped("encrypted PDF (needs a password)") from exc
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise Skipped(f"malformed PDF ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not pages:
        raise Skipped(f"no text on any of its {count} page(s) (image-only or empty PDF)")
    first_line = next((ln.strip() for ln in pages[0].text.splitlines() if ln.strip()), "")
    title = meta_title or first_line[:200] or name
    return Document(name, title, "\n\n".join(p.text for p in pages), parts=tuple(pages))
