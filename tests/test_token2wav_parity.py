"""Numerical parity with the reference modules (step-audio2: cosyvoice2.flow.*, flashcosyvoice HiFT).

Both sides load the same random weights from the same flow.pt / hift.pt, use
the same flow-matching noise and the same vocoder random state.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stepvoice.engine.audio import load_audio
from stepvoice.engine.token2wav import Token2Wav, default_voice_path
from stepvoice.engine.token2wav.config import FlowConfig, HiFTConfig
from stepvoice.engine.token2wav.fake import write_fake_token2wav
from stepvoice.engine.token2wav.flow import CausalMaskedDiffWithXvec
from stepvoice.engine.token2wav.hift import HiFTGenerator

import token2wav_reference as ref  # test-side driver of the reference modules (skips without them)

SEED = 3
MEL_TOL = 1e-4
WAV_TOL = 1e-3


def _codes(n: int, seed: int = 0) -> list[int]:
    return [int(c) for c in np.random.default_rng(seed).integers(0, 6561, n)]


@pytest.fixture(scope="module")
def fake_dirs(tmp_path_factory):
    """Factory: one fake token2wav folder per size for this module (read-only for tests)."""
    made = {}

    def get(size: str):
        if size not in made:
            made[size] = write_fake_token2wav(tmp_path_factory.mktemp(f"t2w_{size}"), size)
        return made[size]
    return get


def _setup(folder, prompt_seconds: float | None = None):
    ours = Token2Wav.from_dir(folder, dtype="fp32", seed=SEED)
    clip = load_audio(default_voice_path())
    voice = ours.prepare_voice(clip[: int(16000 * prompt_seconds)] if prompt_seconds else clip)
    flow, hift = ref.load_reference(folder, ours.flow.decoder.rand_noise)
    return ours, voice, flow, hift


def test_real_size_modules_have_exactly_the_reference_keys_and_shapes():
    with torch.device("meta"):
        ours_flow = CausalMaskedDiffWithXvec(FlowConfig())
        ref_flow = ref.build_reference_flow(FlowConfig(), max_frames=1)
        ours_hift, ref_hift = HiFTGenerator(HiFTConfig()), ref.HiFTGenerator()
    for ours, theirs in ((ours_flow, ref_flow), (ours_hift, ref_hift)):
        a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert a == b
    n_flow = sum(p.numel() for p in ours_flow.parameters())
    n_hift = sum(p.numel() for p in ours_hift.parameters())
    assert round(n_flow / 1e6, 1) == 155.8 and round(n_hift / 1e6, 1) == 20.8


def _offline(folder, size: str, n_codes: int, prompt_seconds: float | None = None) -> None:
    ours, voice, flow, hift = _setup(folder, prompt_seconds)
    codes = _codes(n_codes)
    ref_mel, ref_wav = ref.reference_offline(flow, hift, codes, voice, SEED)
    mel = ours.mel(codes, voice)
    wav = ours.synthesize(codes, voice)
    assert mel.shape == ref_mel.shape == (80, 2 * n_codes)
    assert np.abs(mel - ref_mel).max() <= MEL_TOL
    assert wav.shape == ref_wav.shape == (n_codes * 960,)
    assert np.abs(wav - ref_wav).max() <= WAV_TOL
    assert np.abs(wav).max() > 1e-3  # not trivially silent


def _streamed(folder, size: str, n_codes: int, first: int, prompt_seconds: float | None = None) -> None:
    ours, voice, flow, hift = _setup(folder, prompt_seconds)
    codes = _codes(n_codes, seed=1)
    theirs = ref.ReferenceStream(flow, hift, voice, SEED)
    expected = [theirs.chunk(codes[a:b], last) for a, b, last in ref.chunk_plan(n_codes, first=first)]
    stream = ours.stream(voice, first_chunk=first)
    got = [stream.push(codes[i:i + 7]) for i in range(0, n_codes, 7)] + [stream.finish()]
    got = [g for g in got if g.size]  # pushes that completed no chunk return nothing
    assert [g.size for g in got] == [e.size for e in expected]
    for g, e in zip(got, expected):
        assert np.abs(g - e).max() <= WAV_TOL
    assert sum(g.size for g in got) == n_codes * 960


def test_offline_parity_tiny(fake_dirs):
    _offline(fake_dirs("tiny"), "tiny", 37)


def test_streamed_chunks_equal_reference_tiny(fake_dirs):
    # 4.2 s prompt: 105 codes, 210 frames; 130 codes run the cache past prompt + 100 frames (trim).
    _streamed(fake_dirs("tiny"), "tiny", 130, first=25)


def test_streamed_chunks_equal_reference_small_first_chunk(fake_dirs):
    # 2 s prompt; a 10-code first chunk, then the official 25 (the tiny test covers the trim).
    _streamed(fake_dirs("small"), "small", 61, first=10, prompt_seconds=2.0)


def test_offline_parity_small(fake_dirs):
    _offline(fake_dirs("small"), "small", 30, prompt_seconds=2.0)


@pytest.mark.slow
def test_offline_parity_real_size(fake_dirs):
    _offline(fake_dirs("real"), "real", 50)


@pytest.mark.slow
def test_streamed_chunks_equal_reference_real_size(fake_dirs):
    _streamed(fake_dirs("real"), "real", 80, first=25)
