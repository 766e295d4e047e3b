"""Parity with the official reference: `stepaudio2.StepAudio2.apply_chat_template`
(site-packages, step-audio2 installed --no-deps) + its tokenization loop, run with
transformers' AutoTokenizer over the fake tokenizer files, against build_prompt.

The official module imports librosa and torchaudio (not installed here): the test
puts two small stand-ins in sys.modules for the duration of the import only
(librosa.filters.mel -> the Whisper filters shipped in s3tokenizer; torchaudio.load
-> soundfile)."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stepvoice.engine.audio import load_audio
from stepvoice.engine.messages import Audio, Message, Speech, Text
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.prompt import build_prompt
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

S3_ASSETS = Path(importlib.util.find_spec("s3tokenizer").origin).parent / "assets"


@pytest.fixture(scope="module")
def official(monkeypatch_module):
    import transformers  # noqa: F401  (before any stand-in: it inspects module specs)

    librosa = types.ModuleType("librosa")
    librosa.filters = types.SimpleNamespace(
        mel=lambda sr, n_fft, n_mels: np.load(S3_ASSETS / "mel_filters.npz")[f"mel_{n_mels}"])
    torchaudio = types.ModuleType("torchaudio")

    def ta_load(path):
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(x.T.copy()), sr

    torchaudio.load = ta_load
    monkeypatch_module.setitem(sys.modules, "librosa", librosa)
    monkeypatch_module.setitem(sys.modules, "torchaudio", torchaudio)
    for name in ("utils", "stepaudio2"):
        monkeypatch_module.delitem(sys.modules, name, raising=False)
    import stepaudio2

    yield stepaudio2
    for name in ("utils", "stepaudio2"):
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(d)
    return load_tokenizer(d), AutoTokenizer.from_pretrained(str(d), padding_side="right")


def official_ids(stepaudio2, hf, messages):
    """The official prompt: apply_chat_template, then each piece tokenized on its own."""
    pieces, mels = stepaudio2.StepAudio2.apply_chat_template(None, messages)
    ids = []
    for piece in pieces:
        ids += hf(text=piece)["input_ids"] if isinstance(piece, str) else list(piece)
    return ids, mels


def test_same_ids_and_mels_as_official(official, toks, tmp_path, espeak_wav):
    tok, hf = toks
    question = espeak_wav("Give me a brief introduction to the Great Wall.")
    long_wav = tmp_path / "long.wav"  # 27 s: two pieces
    x = load_audio(question)
    sf.write(long_wav, np.concatenate([x, np.zeros(27 * 16000 - len(x), dtype=np.float32)]), 16000)
    raw = [*tok.encode("Hi"), *tok.ids_of_codes([1, 2, 3, 4]), tok.tts_end_id]
    cases = [
        ([{"role": "system", "content": "You are a helpful assistant."},
          {"role": "human", "content": "Give me a brief introduction to the Great Wall."},
          {"role": "assistant", "content": None}],
         [Message.text("system", "You are a helpful assistant."),
          Message.text("human", "Give me a brief introduction to the Great Wall.")], "text"),
        ([{"role": "system", "content": "You are a helpful assistant."},
          {"role": "human", "content": [{"type": "audio", "audio": str(question)}]},
          {"role": "assistant", "content": "<tts_start>", "eot": False}],
         [Message.text("system", "You are a helpful assistant."), Message("human", [Audio(x)])], "speech"),
        ([{"role": "system", "content": "You are a helpful assistant."},
          {"role": "human", "content": [{"type": "text", "text": "Translate the speech into Chinese."},
                                        {"type": "audio", "audio": str(long_wav)}]},
          {"role": "assistant", "content": [{"type": "text", "text": "<tts_start>"}, {"type": "token", "token": raw}]},
          {"role": "human", "content": "Now write a 4-line poem about it."},
          {"role": "assistant", "content": None}],
         [Message.text("system", "You are a helpful assistant."),
          Message("human", [Text("Translate the speech into Chinese."), Audio(load_audio(long_wav))]),
          Message("assistant", [Speech("Hi", (1, 2, 3, 4), tuple(raw))]),
          Message.text("human", "Now write a 4-line poem about it.")], "text"),
    ]
    for official_msgs, ours, reply in cases:
        want_ids, want_mels = official_ids(official, hf, official_msgs)
        got = build_prompt(ours, tok, GenerationOptions(reply=reply))
        assert got.ids == want_ids
        assert len(got.mels) == len(want_mels)
        for a, b in zip(got.mels, want_mels):
            assert a.shape == b.shape
            assert (a - b.float()).abs().max().item() <= 1e-4
