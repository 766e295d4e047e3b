"""Voice bank on disk: prompt cache, persistence across processes, bad input, crash recovery, the CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stepvoice.assistant.cli import main
from stepvoice.voice_bank import DEFAULT_VOICE, VoiceBank, VoiceBankError
from voice_fixtures import ESPEAK_VOICES, espeak_clips  # noqa: F401  (fixture)


class FakePrompt:
    """Stands in for engine.token2wav.VoicePrompt: the same save/load contract."""

    def __init__(self, codes):
        self.codes = np.asarray(codes, dtype=np.int64)

    def save(self, path):
        np.savez(path, codes=self.codes)

    @classmethod
    def load(cls, path):
        with np.load(path) as d:
            return cls(d["codes"])


class CountingPrepare:
    def __init__(self):
        self.calls = 0

    def __call__(self, samples):
        self.calls += 1
        return FakePrompt([len(samples) % 6561, self.calls])


def snapshot(bank):
    text = sorted((r.source, r.text) for r in bank.index.text_store.rows_where())
    audio = sorted(r.source for r in bank.index.audio_store.rows_where())
    return [v.to_dict() for v in bank.list()], text, audio


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


@pytest.fixture(scope="module")
def emb():
    """Embedders loaded once for the module (the bank takes instances as well as specs)."""
    from stepvoice.retrieval import load_speaker_embedder, load_text_embedder

    return {"text_embedder": load_text_embedder(), "speaker_embedder": load_speaker_embedder()}


def test_prompt_prepared_once_then_memory_then_disk(data, espeak_clips, emb):  # noqa: F811
    prepare = CountingPrepare()
    bank = VoiceBank.open(data, prepare=prepare, load_prompt=FakePrompt.load, starter=False, **emb)
    bank.add(espeak_clips["deep_man"][0], "deep_man", "a deep male voice")
    first = bank.prompt("deep_man")
    assert prepare.calls == 1 and bank.prompt_path("deep_man").is_file()
    assert bank.prompt("deep_man") is first and prepare.calls == 1  # a switch is a lookup
    bank.close()
    again = VoiceBank.open(data, prepare=prepare, load_prompt=FakePrompt.load, **emb)
    assert list(again.prompt("deep_man").codes) == list(first.codes) and prepare.calls == 1  # from disk
    bank.prompt_path("deep_man").write_bytes(b"damaged")
    fresh = VoiceBank.open(data, prepare=prepare, load_prompt=FakePrompt.load, **emb)
    fresh.prompt("deep_man")
    assert prepare.calls == 2  # a damaged cache is prepared again
    plain = VoiceBank.open(data, load_prompt=FakePrompt.load, **emb)  # no prepare callable
    plain.add(espeak_clips["soft_woman"][0], "soft_woman", "a soft female voice")
    with pytest.raises(VoiceBankError, match="no token2wav to prepare"):
        plain.prompt("soft_woman")
    assert plain.prompt("deep_man") is not None  # cached ones still load


def test_real_voice_prompt_type_round_trips_through_the_cache(data, emb):
    from stepvoice.engine.token2wav.voice import VoicePrompt
    prompt = VoicePrompt(np.arange(30) % 6561, np.ones(192, np.float32), np.zeros((60, 80), np.float32))
    bank = VoiceBank.open(data, prepare=lambda samples: prompt, **emb)
    bank.prompt(DEFAULT_VOICE)
    loaded = VoiceBank.open(data, **emb).prompt(DEFAULT_VOICE)  # default loader: engine.token2wav's VoicePrompt.load
    assert loaded.fingerprint() == prompt.fingerprint()


def test_persists_across_processes(data, espeak_clips):  # noqa: F811
    bank = VoiceBank.open(data)
    bank.add(espeak_clips["old_man"][0], "old_man", ESPEAK_VOICES["old_man"][3], transcript="the fox", tags=["old"])
    here = (bank.find("a slow hoarse elderly man").name, [m.name for m in bank.search_like(espeak_clips["old_man"][1], 3)])
    bank.close()
    code = (
        "import json, sys\nfrom stepvoice.voice_bank import VoiceBank\n"
        "b = VoiceBank.open(sys.argv[1])\n"
        "print(json.dumps([b.find('a slow hoarse elderly man').name, [m.name for m in b.search_like(sys.argv[2], 3)],"
        " b.get('old_man').transcript, list(b.get('old_man').tags)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(data), str(espeak_clips["old_man"][1])],
                         capture_output=True, text=True, check=True)
    name, like, transcript, tags = json.loads(out.stdout)
    assert (name, like) == (here[0], here[1]) and name == "old_man" and transcript == "the fox" and tags == ["old"]


def _clip(tmp_path, seconds, amplitude=0.3, name="c.wav"):
    t = np.arange(int(16000 * seconds)) / 16000
    x = (amplitude * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(str(tmp_path / name), x, 16000)
    return tmp_path / name


def _two_hours(tmp_path):
    path = tmp_path / "long.flac"  # digital silence compresses: a 2-hour file of ~200 kB
    with sf.SoundFile(str(path), "w", samplerate=8000, channels=1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(12):
            f.write(np.zeros(8000 * 600, np.int16))
    return path


BAD_ADDS = {
    "bad name": (lambda tp, clips: (clips["deep_man"][0], "../evil", "d"), "invalid voice name"),
    "hidden name": (lambda tp, clips: (clips["deep_man"][0], ".x", "d"), "invalid voice name"),
    "duplicate": (lambda tp, clips: (clips["deep_man"][0], "Fast_Man", "d"), "already exists"),
    "builtin": (lambda tp, clips: (clips["deep_man"][0], "default", "d"), "already exists"),
    "no description": (lambda tp, clips: (clips["deep_man"][0], "new", "  "), "needs a description"),
    "too short": (lambda tp, clips: (_clip(tp, 0.5), "new", "d"), "at least 1 s"),
    "too long": (lambda tp, clips: (_clip(tp, 65), "new", "d"), "3-30 s"),
    "two hours": (lambda tp, clips: (_two_hours(tp), "new", "d"), "7200 s long"),
    "silent": (lambda tp, clips: (_clip(tp, 3, amplitude=0.0), "new", "d"), "silent"),
    "missing file": (lambda tp, clips: (tp / "nope.wav", "new", "d"), "nope.wav"),
    "not audio": (lambda tp, clips: ((tp / "x.wav").write_bytes(b"RIFF....garbage") and tp / "x.wav", "new", "d"), "x.wav"),
}


@pytest.mark.parametrize("case", sorted(BAD_ADDS))
def test_bad_add_is_a_clear_error_and_bank_unchanged(tmp_path, data, espeak_clips, emb, case):  # noqa: F811
    bank = VoiceBank.open(data, starter=case == "builtin", **emb)
    bank.add(espeak_clips["fast_man"][0], "fast_man", "a fast male voice")
    before = snapshot(bank)
    make, message = BAD_ADDS[case]
    wav, name, description = make(tmp_path, espeak_clips)
    with pytest.raises(Exception, match=message) as err:
        bank.add(wav, name, description)
    assert "\n" not in str(err.value)
    assert snapshot(bank) == before
    assert not [p for p in (data / "voices").iterdir() if p.name.startswith(".tmp-")]


def test_replace_and_remove(data, espeak_clips, emb):  # noqa: F811
    bank = VoiceBank.open(data, **emb)
    bank.add(espeak_clips["deep_man"][0], "v", "a deep male voice")
    bank.add(espeak_clips["bright_girl"][0], "v", "a bright girl voice", replace=True)
    assert bank.get("v").description == "a bright girl voice"
    assert bank.find_like(espeak_clips["bright_girl"][1]).name == "v"
    assert len(bank.index.audio_store.rows_where(source="voice:v")) == 1
    bank.remove("v")
    assert "v" not in bank and bank.index.text_store.rows_where(source="voice:v") == []
    with pytest.raises(VoiceBankError, match="cannot be removed"):
        bank.remove(DEFAULT_VOICE)
    with pytest.raises(VoiceBankError, match="no voice named 'v'"):
        bank.remove("v")


def test_index_recovers_from_a_crash_between_folder_and_index(data, espeak_clips, emb):  # noqa: F811
    bank = VoiceBank.open(data, starter=False, **emb)
    bank.add(espeak_clips["soft_woman"][0], "soft_woman", "一个甜美、柔和的女性声音")
    bank.close()
    # simulate: the voice folder was written but the process died before indexing it
    for f in (data / "voices" / ".index").iterdir():
        f.unlink()
    # and a stray folder of another voice without voice.json is ignored
    (data / "voices" / "half").mkdir()
    bank = VoiceBank.open(data, **emb)
    assert bank.find("a sweet soft female voice").name == "soft_woman"
    assert bank.find_like(espeak_clips["soft_woman"][1]).name == "soft_woman"


def test_cli_add_list_search_rm(tmp_path, monkeypatch, capsys, espeak_clips):  # noqa: F811
    monkeypatch.setenv("STEPVOICE_HOME", str(tmp_path / "home"))

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("voices", "add", str(espeak_clips["german_man"][0]), "--name", "hans",
                       "--description", "A steady male voice with a German accent", "--tags", "male,german")
    assert code == 0 and "added voice hans" in out
    code, out, _ = run("voices", "list", "--json")
    listed = {v["name"]: v for v in json.loads(out)}
    assert code == 0 and DEFAULT_VOICE in listed and listed["hans"]["tags"] == ["male", "german"]
    code, out, _ = run("voices", "search", "德国口音的男人", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "hans"
    code, out, _ = run("voices", "search", "--like", str(espeak_clips["german_man"][1]))
    assert code == 0 and out.startswith("1. [") and "hans" in out.splitlines()[0]
    code, out, _ = run("voices", "rm", "hans")
    assert code == 0
    code, _, err = run("voices", "rm", "hans")
    assert code == 1 and err.startswith("error: no voice named 'hans'") and err.count("\n") == 1
    code, _, err = run("voices", "add", str(tmp_path / "missing.wav"), "--name", "x", "--description", "d")
    assert code == 1 and "missing.wav" in err and err.count("\n") == 1
    code, _, err = run("voices", "search")
    assert code == 1 and "QUERY or --like" in err
    shutil.rmtree(tmp_path / "home")
