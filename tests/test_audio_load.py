"""load_audio: formats, channels, resampling, and one clear error for each bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from stepvoice.engine.audio import MIN_PIECE_SAMPLES, load_audio, split_pieces
from stepvoice.engine.errors import AudioError, StepvoiceError


def tone(freq: float, sr: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize("fmt, ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_reads_common_formats_and_resamples(tmp_path, fmt, ext):
    sr = 44100 if fmt == "MP3" else 48000
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(440, sr), sr, format=fmt)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) < 1200  # mp3/ogg encoders add a little padding
    assert abs(dominant_freq(x) - 440) < 5
    assert 0.3 < np.abs(x).max() < 0.7


def test_first_channel_of_stereo_file(tmp_path):
    left, right = tone(300, 16000), tone(1200, 16000)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000)
    x = load_audio(tmp_path / "s.wav")
    assert abs(dominant_freq(x) - 300) < 5
    np.testing.assert_allclose(x, left, atol=1e-4)


def test_bytes_equal_file(tmp_path):
    sf.write(tmp_path / "a.wav", tone(500, 22050), 22050)
    data = (tmp_path / "a.wav").read_bytes()
    np.testing.assert_array_equal(load_audio(data), load_audio(tmp_path / "a.wav"))
    np.testing.assert_array_equal(load_audio(bytearray(data)), load_audio(str(tmp_path / "a.wav")))


def test_arrays_int_pcm_rates_and_layouts():
    x = tone(250, 8000)
    y = load_audio(x, sr=8000)
    assert abs(len(y) - 16000) <= 2 and abs(dominant_freq(y) - 250) < 5
    pcm = (x * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm, sr=8000), y, atol=1e-3)
    # (samples, channels) and torch-style (channels, samples) give the first channel
    other = tone(900, 8000)
    np.testing.assert_allclose(load_audio(np.stack([x, other], axis=1), sr=8000), y, atol=1e-6)
    np.testing.assert_allclose(load_audio(np.stack([x, other], axis=0), sr=8000), y, atol=1e-6)
    # default rate of arrays is 16 kHz: untouched
    z = tone(1000, 16000)
    np.testing.assert_array_equal(load_audio(z), z)


def err(src, **kw) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(src, **kw)
    assert isinstance(info.value, StepvoiceError)
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_missing_file(tmp_path):
    assert "not found" in err(tmp_path / "nope.wav")


def test_zero_byte_file_and_bytes(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "empty" in err(tmp_path / "empty.wav")
    assert "empty" in err(b"")


def test_corrupt_and_unsupported(tmp_path):
    (tmp_path / "notes.wav").write_text("this is not audio at all, just some text " * 10)
    assert "format" in err(tmp_path / "notes.wav")
    sf.write(tmp_path / "a.wav", tone(440, 16000), 16000)
    truncated = (tmp_path / "a.wav").read_bytes()[:30]  # a header cut in the middle
    assert "audio" in err(truncated)
    assert "folder" in err(tmp_path)


def test_header_only_wav_has_no_samples(tmp_path):
    sf.write(tmp_path / "none.wav", np.zeros(0, dtype=np.float32), 16000)
    assert "no samples" in err(tmp_path / "none.wav")


def test_nan_and_inf_samples(tmp_path):
    x = tone(440, 16000)
    x[100] = np.nan
    assert "NaN" in err(x)
    x[100] = np.inf
    assert "infinite" in err(x)
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    assert "NaN" in err(tmp_path / "nan.wav")


def test_bad_arrays_and_types():
    assert "empty" in err(np.zeros(0, dtype=np.float32))
    assert "shape" in err(np.zeros((2, 2, 100), dtype=np.float32))
    assert "dtype" in err(np.array(["a", "b"]))
    assert "numpy array" in err(12345)


def test_split_pieces_drops_only_a_useless_sliver():
    x = np.zeros(400000 + MIN_PIECE_SAMPLES - 1, dtype=np.float32)
    assert [len(p) for p in split_pieces(x)] == [400000]
    x = np.zeros(400000 + MIN_PIECE_SAMPLES, dtype=np.float32)
    assert [len(p) for p in split_pieces(x)] == [400000, MIN_PIECE_SAMPLES]
    assert split_pieces(np.zeros(10, dtype=np.float32)) == []
