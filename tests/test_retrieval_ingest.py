"""Ingestion: chunking, every file type, updates, and bad input that leaves the store untouched."""
from __future__ import annotations

import hashlib
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf

from stepvoice.retrieval import IngestError, Retriever, chunk_text
from stepvoice.retrieval.ingest import ChunkingConfig


def make_pdf(path, lines):
    """A minimal one-page PDF with Helvetica text (offsets computed, so pypdf reads it)."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({ln}) Tj T*" for ln in lines) + " ET"
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


def espeak(path, text, voice="en-us+f3", speed=150, pitch=70):
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True)
    raw.unlink()


def store_fingerprint(data_dir):
    """Hash of every row of every store (not the file bytes: WAL checkpoints may rewrite pages)."""
    import sqlite3

    h = hashlib.sha256()
    for db in sorted((data_dir / "index").glob("*.sqlite")):
        con = sqlite3.connect(str(db))
        for row in con.execute("SELECT id, kind, source, text, hash, vector FROM items ORDER BY id"):
            h.update(repr(row).encode())
        h.update(con.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0].encode())
        con.close()
    return h.hexdigest()


def test_chunks_overlap_and_cover_everything():
    sentences = [f"Sentence number {i} talks about topic {i * 7 % 13}." for i in range(60)]
    chunks = chunk_text(" ".join(sentences), size=200, overlap=50)
    assert len(chunks) > 5 and all(len(c) <= 200 for c in chunks)
    for s in sentences:
        assert any(s in c for c in chunks), s
    for a, b in zip(chunks, chunks[1:]):
        assert b[:20] in a  # each chunk starts inside the previous one
    zh = "今天天气很好。" * 50
    zc = chunk_text(zh, size=60, overlap=14)
    assert all(len(c) <= 60 for c in zc) and zc[1][:7] in zc[0]
    with pytest.raises(ValueError):
        chunk_text("x", size=10, overlap=10)


@pytest.fixture
def retriever(tmp_path):
    r = Retriever.open(tmp_path / "data", text_embedder="hash", chunking=ChunkingConfig(size=300, overlap=60))
    yield r
    r.close()


def test_every_text_type_is_indexed_and_found(tmp_path, retriever):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("The lighthouse keeper feeds the gulls every morning at dawn.")
    (docs / "b.md").write_text("# Garden\n\nTomatoes need six hours of **sunlight** a day.")
    (docs / "sub" / "c.html").write_text(
        "<html><head><style>body{color:red}</style><script>var x='zebra stripes';</script></head>"
        "<body><p>The violin has four strings tuned in fifths.</p></body></html>")
    make_pdf(docs / "d.pdf", ["Quarterly revenue grew by twelve percent", "in the northern region."])
    (docs / ".hidden.txt").write_text("secret should not be indexed")
    (docs / "notes.xyz").write_text("unsupported types inside folders are skipped")
    report = retriever.add_paths([docs])
    assert len(report.added) == 4 and report.items == 4
    for query, name in [("lighthouse gulls", "a.txt"), ("tomatoes sunlight", "b.md"),
                        ("violin strings", "c.html"), ("quarterly revenue", "d.pdf")]:
        assert retriever.search(query, k=1)[0].source.endswith(name)
    assert "zebra" not in " ".join(h.text for h in retriever.search("zebra stripes", k=5))  # script text dropped
    assert not any("secret" in h.text for h in retriever.search("secret", k=10))


def test_unchanged_skipped_changed_replaced_removed(tmp_path, retriever):
    f = tmp_path / "f.txt"
    f.write_text("Alpha beta gamma delta.")
    assert retriever.add_paths([f]).items == 1
    again = retriever.add_paths([f])
    assert again.unchanged == [str(f.resolve())] and again.items == 0
    f.write_text("Completely different words now.")
    assert retriever.add_paths([f]).items == 1
    texts = [h.text for h in retriever.search("alpha beta", k=10)]
    assert texts == ["Completely different words now."]
    assert retriever.remove(str(f)) == 1
    assert retriever.search("different words", k=5) == []


def test_audio_clip_with_transcript(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    espeak(clips / "hello.wav", "Hello there, this is the weather report for today.")
    (clips / "hello.txt").write_text("Hello there, this is the weather report for today.")
    espeak(clips / "other.wav", "A completely different speaker reads this.", voice="en-us+m7", pitch=20, speed=130)
    with Retriever.open(tmp_path / "data", text_embedder="hash") as r:
        report = r.add_paths([clips])
        assert sorted(os.path.basename(s) for s in report.added) == ["hello.wav", "other.wav"]
        hit = r.search("weather report", k=1)[0]
        assert hit.kind == "transcript" and hit.path.endswith("hello.wav")
        probe = tmp_path / "probe.wav"
        espeak(probe, "Some new words spoken in the same voice as before.")
        from stepvoice.engine.audio import load_audio

        assert r.search(load_audio(probe), k=1)[0].source.endswith("hello.wav")


BAD = {
    "missing": (lambda d: d / "nope.txt", "no such file"),
    "empty": (lambda d: _write(d / "empty.txt", b""), "empty"),
    "blank": (lambda d: _write(d / "blank.md", b"   \n\n  "), "no text"),
    "non-utf8": (lambda d: _write(d / "latin.txt", "caf\u00e9 cr\u00e8me".encode("latin-1")), "not UTF-8"),
    "binary": (lambda d: _write(d / "bin.txt", b"ab\x00cd"), "binary"),
    "zero-pdf": (lambda d: _write(d / "zero.pdf", b""), "empty"),
    "bad-pdf": (lambda d: _write(d / "bad.pdf", b"%PDF-1.4 this is not really a pdf"), "PDF"),
    "bad-audio": (lambda d: _write(d / "noise.wav", os.urandom(2000)), "not a readable audio"),
    "silent-audio": (lambda d: _wav(d / "silent.wav", np.zeros(16000, np.float32)), "silent"),
    "two-hours": (lambda d: _long_flac(d / "long.flac"), "2:00:00 long"),
    "unsupported": (lambda d: _write(d / "x.docx", b"PK"), "unsupported file type"),
}


def _write(p, data):
    p.write_bytes(data)
    return p


def _wav(p, x):
    sf.write(str(p), x, 16000)
    return p


def _long_flac(p):
    with sf.SoundFile(str(p), "w", samplerate=8000, channels=1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(8000 * 600, np.int16)
        for _ in range(12):
            f.write(block)
    return p


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_clear_error_and_store_untouched(tmp_path, retriever, case):
    good = tmp_path / "good.txt"
    good.write_text("A perfectly fine document about sailing boats.")
    retriever.add_paths([good])
    before = store_fingerprint(retriever.data_dir)
    make, message = BAD[case]
    bad = make(tmp_path)
    other = tmp_path / "other.txt"
    other.write_text("Another fine document that must not be added alone.")
    with pytest.raises(IngestError, match=message) as err:
        retriever.add_paths([other, bad])
    assert "\n" not in str(err.value)
    assert store_fingerprint(retriever.data_dir) == before
    assert retriever.search("another fine document", k=5)[0].source == str(good.resolve())


def test_skip_bad_adds_the_rest(tmp_path, retriever):
    (tmp_path / "ok.txt").write_text("Good content about mountains.")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa bad")
    report = retriever.add_paths([tmp_path / "ok.txt", tmp_path / "bad.txt"], skip_bad=True)
    assert len(report.added) == 1 and len(report.skipped) == 1 and "not UTF-8" in report.skipped[0]
