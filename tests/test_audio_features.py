"""Log-mel features and placeholder counts against independent computations."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from stepvoice.engine.audio import load_audio, log_mel, mel_filters, placeholder_count, split_pieces

S3_ASSETS = Path(importlib.util.find_spec("s3tokenizer").origin).parent / "assets"


def whisper_filters(n_mels: int) -> np.ndarray:
    return np.load(S3_ASSETS / "mel_filters.npz")[f"mel_{n_mels}"]


def numpy_log_mel(x: np.ndarray) -> np.ndarray:
    """The official recipe written directly in numpy (float64), with the Whisper filters."""
    x = np.concatenate([x.astype(np.float64), np.zeros(479)])
    x = np.pad(x, 200, mode="reflect")  # centered STFT
    n_frames = 1 + (len(x) - 400) // 160
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    frames = np.stack([x[i * 160:i * 160 + 400] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # [T, 201]
    power = power[:-1].T  # drop the last frame -> [201, T]
    mel = whisper_filters(128).astype(np.float64) @ power
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return (logs + 4.0) / 4.0


@pytest.mark.parametrize("n_mels", [128, 80])
def test_mel_filters_equal_whisper_npz(n_mels):
    ours = mel_filters(16000, 400, n_mels)
    assert ours.shape == (n_mels, 201)
    np.testing.assert_allclose(ours, whisper_filters(n_mels), atol=1e-6, rtol=0)


def test_features_match_numpy_on_aishell_clip():
    x = load_audio(S3_ASSETS / "BAC009S0764W0121.wav")
    ours = log_mel(x).numpy()
    ref = numpy_log_mel(x)
    assert ours.shape == ref.shape == (128, (len(x) + 479) // 160)
    assert np.abs(ours - ref).max() <= 1e-4


def test_features_match_numpy_on_espeak_speech(espeak_wav):
    x = load_audio(espeak_wav("Give me a brief introduction to the Great Wall.", voice="en-us+f3", pitch=70))
    assert len(x) > 16000  # a real utterance, not silence
    ours = log_mel(x).numpy()
    ref = numpy_log_mel(x)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4
    # speech has structure: the floor (max - 8) is not everywhere
    assert ours.std() > 0.1


def test_features_accept_torch_and_lists_alike():
    import torch

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    a = log_mel(x)
    b = log_mel(torch.from_numpy(x))
    assert a.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize(
    "seconds, expected",
    [(1, [13]), (25, [313]), (26, [313, 13]), (60, [313, 313, 125])],
)
def test_placeholder_counts(seconds, expected):
    x = np.zeros(16000 * seconds, dtype=np.float32)
    x[::7] = 0.01  # not silent, not that it matters for the count
    pieces = split_pieces(x)
    assert [len(p) for p in pieces][:1] == [min(len(x), 400000)]
    counts = [placeholder_count(log_mel(p).shape[1]) for p in pieces]
    assert counts == expected


def test_placeholder_formula_matches_encoder_arithmetic():
    # conv2 (k3 s2 p1), avg-pool 2, adapter conv (k3 s2 p1), on T - 2 frames
    for frames in range(5, 3000, 37):
        length = frames - 2
        after_conv2 = (length + 2 - 3) // 2 + 1
        after_pool = after_conv2 // 2
        after_adapter = (after_pool + 2 - 3) // 2 + 1
        assert placeholder_count(frames) == after_adapter, frames
