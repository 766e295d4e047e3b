"""Files -> documents: text, Markdown, HTML, PDF (chunked with overlap) and audio clips (one unit each).

Reading is separate from storing: every file is read, checked and chunked
before anything is written, so a bad file costs a clear error and leaves the
store as it was.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from stepvoice.engine.errors import AudioError, StepvoiceError

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | AUDIO_SUFFIXES
MAX_TEXT_BYTES = 50 * 1024 * 1024

log = logging.getLogger(__name__)


class IngestError(StepvoiceError):
    """A file that cannot be indexed (unreadable, empty, wrong encoding, too long)."""


@dataclass
class ChunkingConfig:
    size: int = 800  # characters per chunk (CJK has no spaces, so characters, not words)
    overlap: int = 160  # characters repeated from the previous chunk, so no fact is cut in two
    max_audio_s: float = 600.0  # longer recordings are not one "clip": split them first
    # A few KB of PDF can expand to hundreds of MB of text: refuse a document past this many
    # characters (about 1,500 book pages) and a run past this many chunks, before embedding.
    max_chars: int = 5_000_000
    max_chunks_per_run: int = 100_000


@dataclass
class Document:
    """One file, read: its chunks (text) or its samples (audio), and the hash of its bytes."""

    source: str
    kind: str  # "text" or "audio"
    source_hash: str
    chunks: list[str] = field(default_factory=list)
    samples: np.ndarray | None = None
    transcript: str | None = None
    path: str | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def item_hash(kind: str, source: str, content: str) -> str:
    """Row identity: the same chunk of the same source is stored once."""
    return hashlib.sha256(f"{kind}\0{source}\0{content}".encode("utf-8")).hexdigest()


# ----- text ---------------------------------------------------------------------------
# Latin sentence ends need a following space ("setup.sh" is no sentence end); CJK ones do not
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])\s*|\n+")


def chunk_text(text: str, size: int = 800, overlap: int = 160) -> list[str]:
    """Pack sentences into chunks of at most ~`size` chars, each starting with ~`overlap` chars of the previous.

    Paragraph and sentence ends are preferred cut points; a sentence longer
    than `size` is cut at `size`.
    """
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    text = text.strip()
    if not text:
        return []
    pieces: list[str] = []
    for part in _SENTENCE_END.split(text):
        part = " ".join(part.split())
        while len(part) > size:
            pieces.append(part[:size])
            part = part[size - overlap :]
        if part:
            pieces.append(part)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        sep = "" if not current or _is_cjk(current[-1]) else " "
        if current and len(current) + len(sep) + len(piece) > size:
            chunks.append(current)
            tail = current[-overlap:] if overlap else ""
            # start the overlap at a word boundary when there is one
            if " " in tail and not _is_cjk(tail[0]):
                tail = tail[tail.index(" ") + 1 :]
            current = tail
            sep = "" if not current or _is_cjk(current[-1]) else " "
        current = f"{current}{sep}{piece}" if current else piece
    if current and (not chunks or current != chunks[-1][-len(current):]):
        chunks.append(current)
    return chunks


def _is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef" or "\u3000" <= ch <= "\u303f"


def read_text(path: Path, data: bytes, max_chars: int | None = None) -> str:
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return _read_pdf(path, data, max_chars)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise IngestError(f"{path}: not UTF-8 text (byte {e.start}); convert it to UTF-8 first") from None
    if "\x00" in text:
        raise IngestError(f"{path}: looks like a binary file, not text")
    if suffix in HTML_SUFFIXES:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "noscript", "template"]):
            tag.decompose()
        text = soup.get_text("\n")
    return text


def _too_long(path: Path, n: int, max_chars: int) -> IngestError:
    return IngestError(f"{path}: more than {max_chars:,} characters of text (found {n:,}{'+' if n > max_chars else ''}); "
                       "split it, or raise the limit (ChunkingConfig.max_chars)")


def _read_pdf(path: Path, data: bytes, max_chars: int | None = None) -> str:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestError(f"{path}: the PDF is encrypted")
        pages: list[str] = []
        total = 0
        for page in reader.pages:  # page by page: a small PDF can expand to hundreds of MB of text
            pages.append(page.extract_text() or "")
            total += len(pages[-1]) + 2
            if max_chars is not None and total > max_chars:
                raise _too_long(path, total, max_chars)
        text = "\n\n".join(pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise IngestError(f"{path}: not a readable PDF ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not text.strip():
        raise IngestError(f"{path}: the PDF has no extractable text (scanned pages?)")
    return text


# ----- audio --------------------------------------------------------------------------
def read_clip(path: Path, max_s: float) -> np.ndarray:
    """A reference/indexed clip as 16 kHz mono float32; refuses recordings longer than `max_s`."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError
        raise IngestError(f"{path}: not a readable audio file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds > max_s:
        raise IngestError(f"{path}: audio is {_hms(seconds)} long; clips over {_hms(max_s)} are not indexed (split it first)")
    from stepvoice.engine.audio import load_audio

    try:
        samples = load_audio(path)
    except AudioError as e:
        raise IngestError(f"{path}: {e}") from None
    if len(samples) == 0 or float(np.abs(samples).max()) < 1e-4:
        raise IngestError(f"{path}: the audio is empty or silent")
    return samples


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ----- files --------------------------------------------------------------------------
def _walk(root: Path, follow_links: bool) -> list[Path]:
    """Files under `root` (hidden entries skipped). Without `follow_links`, a link whose target lies
    outside the root is skipped (files and folders alike): `index add docs/` never reads /etc/passwd
    through `docs/passwd.txt -> /etc/passwd`, which RAG would then serve to any client."""
    real_root = root.resolve()
    out: list[Path] = []
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(root, followlinks=follow_links):
        here = Path(folder)
        real = here.resolve()
        if real in seen:  # a link cycle
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (follow_links or not (here / d).is_symlink()))
        for name in sorted(files):
            f = here / name
            if name.startswith(".") or f.suffix.lower() not in SUPPORTED or not f.is_file():
                continue
            if not follow_links and not f.resolve().is_relative_to(real_root):
                log.warning("skipped %s: a link out of %s (use --follow-links to index it)", f, root)
                continue
            out.append(f)
    return sorted(out)


def collect_files(paths: Iterable[str | Path], follow_links: bool = False) -> list[Path]:
    """Expand folders (recursively, skipping hidden entries, unsupported types and, unless
    `follow_links`, links that lead out of the folder); keep named files as given."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise IngestError(f"{p}: no such file or folder")
        if p.is_dir():
            found.extend(_walk(p, follow_links))
        else:
            if p.suffix.lower() not in SUPPORTED:
                raise IngestError(f"{p}: unsupported file type {p.suffix or '(none)'} (supported: {', '.join(sorted(SUPPORTED))})")
            found.append(p)
    # an audio file's transcript is a same-stem .txt beside it, not a document of its own
    audio_stems = {f.with_suffix("") for f in found if f.suffix.lower() in AUDIO_SUFFIXES}
    unique = dict.fromkeys(f.resolve() for f in found if not (f.suffix.lower() == ".txt" and f.with_suffix("") in audio_stems))
    return list(unique)


def read_document(path: Path, config: ChunkingConfig | None = None) -> Document:
    """Read and check one file; raises IngestError with the reason."""
    config = config or ChunkingConfig()
    path = Path(path).resolve()
    source = str(path)
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        samples = read_clip(path, config.max_audio_s)
        transcript = None
        sidecar = path.with_suffix(".txt")
        if sidecar.is_file():
            transcript = " ".join(read_text(sidecar, sidecar.read_bytes()).split()) or None
        digest = sha256_bytes(path.read_bytes() + (transcript or "").encode())
        return Document(source, "audio", digest, samples=samples, transcript=transcript, path=source)
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise IngestError(f"{path}: {size // 2**20} MiB is too big for one document (limit {MAX_TEXT_BYTES // 2**20} MiB)")
        data = path.read_bytes()
    except PermissionError:
        raise IngestError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise IngestError(f"{path}: is a folder") from None
    except OSError as e:
        raise IngestError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not data:
        raise IngestError(f"{path}: the file is empty")
    text = read_text(path, data, config.max_chars)
    if len(text) > config.max_chars:
        raise _too_long(path, len(text), config.max_chars)
    chunks = chunk_text(text, config.size, config.overlap)
    if not chunks:
        raise IngestError(f"{path}: no text in it")
    return Document(source, "text", sha256_bytes(data), chunks=chunks, path=source)
