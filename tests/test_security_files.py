"""Files stay where they belong: voice-bank names cannot reach outside the bank; `index add` does not
follow links out of its roots and caps text per document and chunks per run."""
from __future__ import annotations

import json
import os

import pytest

from stepvoice.voice_bank import VoiceBank, VoiceBankError
from stepvoice.voice_bank.voice import VOICE_FILE


def plant_voice(folder):
    """A folder that looks like a voice (what `voices rm` used to delete wherever it was)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / VOICE_FILE).write_text(json.dumps({"name": folder.name, "description": "x", "clip": "clip.wav"}))
    (folder / "clip.wav").write_bytes(b"RIFF")
    return folder


@pytest.fixture
def bank(tmp_path):
    return VoiceBank(tmp_path / "data", starter=False, text_embedder="hash")


def test_voice_names_cannot_leave_the_bank(bank, tmp_path):
    outside = plant_voice(tmp_path / "elsewhere" / "victim")
    deep = plant_voice(tmp_path / "x")
    for name in (str(outside), "con/../../../x", "../../x", "../elsewhere/victim", str(outside) + "/", ".", ".."):
        with pytest.raises(VoiceBankError):
            bank.remove(name)
        with pytest.raises(VoiceBankError):
            bank.get(name)
        assert name not in bank
    assert (outside / VOICE_FILE).is_file() and (deep / VOICE_FILE).is_file()


def test_a_link_in_the_bank_to_a_folder_outside_is_not_a_voice(bank, tmp_path):
    outside = plant_voice(tmp_path / "elsewhere" / "linked")
    os.symlink(outside, bank.root / "linked")
    with pytest.raises(VoiceBankError):
        bank.remove("linked")
    assert (outside / VOICE_FILE).is_file()
    assert "linked" not in bank


def test_a_voice_json_cannot_point_its_clip_outside(bank):
    folder = plant_voice(bank.root / "sneaky")
    (folder / VOICE_FILE).write_text(json.dumps({"name": "sneaky", "description": "x", "clip": "../../../etc/passwd"}))
    with pytest.raises(VoiceBankError, match="damaged"):
        bank.get("sneaky")


def test_ask_voice_with_a_path_is_refused(bank, tmp_path):
    from stepvoice.assistant.voices import SessionVoices
    from stepvoice.engine.errors import StepvoiceError

    outside = plant_voice(tmp_path / "elsewhere" / "v")
    with pytest.raises(StepvoiceError):
        SessionVoices(bank, None).check(str(outside))


# ---- index add ------------------------------------------------------------------------


def test_index_add_does_not_follow_links_out_of_the_root(tmp_path):
    from stepvoice.retrieval.ingest import collect_files

    secret = tmp_path / "secret" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("ordinary notes")
    os.symlink(secret, docs / "passwd.txt")
    os.symlink(secret.parent, docs / "linked_dir")
    (secret.parent / "more.txt").write_text("more secrets")
    inside = docs / "sub"
    inside.mkdir()
    (inside / "real.txt").write_text("inside")
    os.symlink(inside / "real.txt", docs / "alias.txt")  # a link that stays inside the root is fine

    found = {p.name for p in collect_files([docs])}
    assert found == {"notes.txt", "real.txt"}
    followed = {p.name for p in collect_files([docs], follow_links=True)}
    assert {"passwd", "more.txt"} <= followed
    # a link named on the command line itself is the user's explicit choice
    assert [p.name for p in collect_files([docs / "passwd.txt"], follow_links=False)] == ["passwd"]


def test_index_caps_text_per_document_and_chunks_per_run(tmp_path):
    from stepvoice.retrieval.ingest import ChunkingConfig, IngestError, read_document

    big = tmp_path / "big.txt"
    big.write_text("word " * 300_000)  # 1.5 MB of text
    with pytest.raises(IngestError, match="characters of text"):
        read_document(big, ChunkingConfig(max_chars=1_000_000))
    assert read_document(big, ChunkingConfig(max_chars=2_000_000)).chunks


def test_index_add_refuses_a_run_over_the_chunk_cap(tmp_path):
    from stepvoice.retrieval import Retriever
    from stepvoice.retrieval.ingest import ChunkingConfig, IngestError

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(5):
        (folder / f"d{i}.txt").write_text(f"document {i}. " * 400)
    r = Retriever(tmp_path / "data", text_embedder="hash", chunking=ChunkingConfig(max_chunks_per_run=10))
    with r:
        with pytest.raises(IngestError, match="chunks"):
            r.add_paths([folder])
        assert r.sources() == []
