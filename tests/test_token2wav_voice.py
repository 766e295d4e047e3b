"""Voice prompts: features equal direct computations; preparation, saving, bad clips."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import soundfile as sf

from stepvoice.engine.errors import AudioError
from stepvoice.engine.token2wav import Token2Wav, VoicePrompt, default_voice_path
from stepvoice.engine.token2wav import features
from stepvoice.engine.token2wav.voice import MAX_SECONDS


@pytest.fixture(scope="module")
def t2w(fake_token2wav):
    return Token2Wav.from_dir(fake_token2wav)


def _speechlike(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Voiced-like test signal: harmonics with a wandering pitch plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    return (0.2 * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# ---- direct computations, written out here in numpy ----------------------------------------

def _slaney_mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    def hz_to_mel(f):
        f = np.asarray(f, float)
        return np.where(f < 1000, f * 3 / 200, 15 + 27 * np.log(np.maximum(f, 1e-10) / 1000) / np.log(6.4))

    def mel_to_hz(m):
        m = np.asarray(m, float)
        return np.where(m < 15, m * 200 / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    bank = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i:i + 3]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bank[i] = np.maximum(0, np.minimum(rising, falling)) * 2 / (hi - lo)
    return bank


def _prompt_mel_direct(y: np.ndarray) -> np.ndarray:
    """Reference §5 recipe: reflect pad 720, frames of 1920 every 480, periodic Hann, magnitude
    sqrt(x + 1e-9), 80 slaney bands up to 8 kHz, natural log of max(x, 1e-5). Returns [T, 80]."""
    n_fft, hop = 1920, 480
    y = np.pad(y.astype(np.float64), (n_fft - hop) // 2, mode="reflect")
    n = 1 + (y.size - n_fft) // hop
    frames = np.stack([y[i * hop:i * hop + n_fft] for i in range(n)]) * np.hanning(n_fft + 1)[:-1]
    spec = np.fft.rfft(frames, axis=1)
    mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
    return np.log(np.maximum(mag @ _slaney_mel(24000, n_fft, 80, 0, 8000).T, 1e-5))


def _kaldi_fbank_direct(x: np.ndarray) -> np.ndarray:
    """Kaldi fbank defaults (25 ms / 10 ms, snip edges, DC removal, pre-emphasis 0.97, Povey
    window, 512-point power spectrum, 80 mel bins 20 Hz..8 kHz on 1127 ln(1 + f/700), log),
    then minus the mean over frames. Returns [T, 80]."""
    sr, size, shift, n_fft = 16000, 400, 160, 512
    n = 1 + (x.size - size) // shift
    frames = np.stack([x[i * shift:i * shift + size] for i in range(n)]).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
    frames *= (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / (size - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2

    def mel(f):
        return 1127.0 * np.log(1 + np.asarray(f, float) / 700.0)

    lo, hi = mel(20.0), mel(sr / 2)
    centers = lo + (hi - lo) / 81 * np.arange(82)
    bin_mel = mel(np.arange(n_fft // 2) * sr / n_fft)
    bank = np.zeros((80, n_fft // 2 + 1))
    for m in range(80):
        left, mid, right = centers[m:m + 3]
        up = (bin_mel - left) / (mid - left)
        down = (right - bin_mel) / (right - mid)
        bank[m, : n_fft // 2] = np.where((bin_mel > left) & (bin_mel < right), np.minimum(up, down), 0)
    feats = np.log(np.maximum(power @ bank.T, np.finfo(np.float32).eps))
    return feats - feats.mean(axis=0, keepdims=True)


def test_prompt_mel_equals_direct_computation():
    y = _speechlike(2.0, 24000)
    ours = features.prompt_mel(y)
    direct = _prompt_mel_direct(y)
    assert ours.shape == direct.shape == (100, 80)
    assert np.abs(ours - direct).max() < 5e-4


def test_speaker_fbank_equals_direct_computation():
    x = _speechlike(1.5, 16000, seed=1)
    ours = features.speaker_fbank(x)
    direct = _kaldi_fbank_direct(x)
    assert ours.shape == direct.shape == (148, 80)
    assert np.abs(ours - direct).max() < 5e-4


def _import_s3tokenizer():
    """s3tokenizer imports torchaudio at module level (only for load_audio); the installed
    torchaudio may not load beside this torch, so a stand-in sits in sys.modules meanwhile."""
    try:
        import torchaudio  # noqa: F401
        stub = None
    except Exception:
        stub = types.ModuleType("torchaudio")
        sys.modules["torchaudio"] = stub
    try:
        import s3tokenizer  # installed --no-deps by scripts/setup.sh
    finally:
        if stub is not None and sys.modules.get("torchaudio") is stub:
            del sys.modules["torchaudio"]
    return s3tokenizer


def test_tokenizer_features_equal_s3tokenizer():
    s3tokenizer = _import_s3tokenizer()
    import torch

    x = _speechlike(3.0, 16000, seed=2)
    theirs = s3tokenizer.log_mel_spectrogram(torch.from_numpy(x)).numpy()
    ours = features.tokenizer_log_mel(x)
    assert ours.shape == theirs.shape == (128, 300)
    assert np.abs(ours - theirs).max() < 1e-5


def test_prepare_voice_shapes_and_rates(t2w):
    voice = t2w.prepare_voice(default_voice_path())
    seconds = sf.info(str(default_voice_path())).duration
    assert abs(voice.codes.size - 25 * seconds) <= 1
    assert voice.mel.shape == (2 * voice.codes.size, 80)
    assert voice.speaker.shape == (192,) and np.isfinite(voice.speaker).all()
    assert voice.codes.min() >= 0 and voice.codes.max() <= 6560
    # The prompt mel is the 24 kHz mel of the clip, fitted to 2 x codes frames.
    clip, sr = sf.read(str(default_voice_path()), dtype="float32")
    import soxr
    direct = _prompt_mel_direct(soxr.resample(clip, sr, 24000, quality="HQ"))
    n = min(direct.shape[0], voice.mel.shape[0])
    assert np.abs(voice.mel[:n] - direct[:n]).max() < 2e-3


def test_prepare_is_deterministic_and_speakers_differ(t2w, espeak_wav):
    a = espeak_wav("The quick brown fox jumps over the lazy dog.", voice="en-us+f3", pitch=70)
    b = espeak_wav("The quick brown fox jumps over the lazy dog.", voice="en-us+m1", pitch=30)
    va, va2, vb = t2w.prepare_voice(a), t2w.prepare_voice(a), t2w.prepare_voice(b)
    assert np.array_equal(va.codes, va2.codes) and np.array_equal(va.speaker, va2.speaker)
    cos = float(va.speaker @ vb.speaker / np.linalg.norm(va.speaker) / np.linalg.norm(vb.speaker))
    assert cos < 0.999
    assert not np.allclose(va.mel[:50], vb.mel[:50])


def test_voice_prompt_save_load_roundtrip(t2w, tmp_path):
    voice = t2w.prepare_voice(default_voice_path())
    voice.save(tmp_path / "v.npz")
    back = VoicePrompt.load(tmp_path / "v.npz")
    assert np.array_equal(back.codes, voice.codes) and back.codes.dtype == np.int64
    assert np.array_equal(back.speaker, voice.speaker) and np.array_equal(back.mel, voice.mel)
    assert back.fingerprint() == voice.fingerprint()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(AudioError, match="cannot read voice prompt"):
        VoicePrompt.load(tmp_path / "bad.npz")


def test_voice_prompt_rejects_inconsistent_parts():
    with pytest.raises(AudioError, match="mel"):
        VoicePrompt(np.arange(10), np.ones(192), np.zeros((19, 80)))
    with pytest.raises(AudioError, match="codes"):
        VoicePrompt(np.array([0, 6561]), np.ones(192), np.zeros((4, 80)))


def test_bad_reference_clips_give_clear_errors(t2w, tmp_path):
    with pytest.raises(AudioError, match="silent"):
        t2w.prepare_voice(np.zeros(16000 * 3, np.float32))
    with pytest.raises(AudioError, match=r"0\.20 s long"):
        t2w.prepare_voice(_speechlike(0.2, 16000))
    with pytest.raises(AudioError, match="NaN"):
        t2w.prepare_voice(np.full(16000 * 2, np.nan, np.float32))
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError, match="cannot read"):
        t2w.prepare_voice(tmp_path / "broken.wav")
    with pytest.raises(AudioError, match="cannot read"):
        t2w.prepare_voice(tmp_path / "missing.wav")


def test_long_reference_clip_is_trimmed_with_a_warning(t2w):
    long_clip = _speechlike(60.0, 16000, seed=3)
    with pytest.warns(UserWarning, match=f"first {MAX_SECONDS:g} s"):
        voice = t2w.prepare_voice(long_clip)
    assert voice.codes.size == int(25 * MAX_SECONDS)
    assert voice.mel.shape[0] == 2 * voice.codes.size


def test_stereo_24k_file_uses_first_channel_for_codes_and_mean_for_mel(t2w, tmp_path):
    left, right = _speechlike(2.0, 24000, seed=4), _speechlike(2.0, 24000, seed=5)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 24000, subtype="FLOAT")
    sf.write(tmp_path / "left.wav", left, 24000, subtype="FLOAT")
    stereo, only_left = t2w.prepare_voice(tmp_path / "stereo.wav"), t2w.prepare_voice(tmp_path / "left.wav")
    assert np.array_equal(stereo.codes, only_left.codes)
    direct = _prompt_mel_direct((left + right) / 2)
    n = min(direct.shape[0], stereo.mel.shape[0])
    assert np.abs(stereo.mel[:n] - direct[:n]).max() < 2e-3
