"""Helpers for the voice-loop, VAD and audio-I/O tests: offline espeak-ng speech, tones.

Imported by tests/test_voice_loop_*.py, test_vad_*.py, test_audio_io_*.py.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

SR = 16000


def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")


@functools.lru_cache(maxsize=32)
def _espeak_cached(text: str, voice: str, speed: int) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True)
        x, sr = sf.read(out, dtype="float32", always_2d=True)
    x = soxr.resample(x[:, 0], sr, SR).astype(np.float32)
    return x.tobytes()


def espeak(text: str, voice: str = "en-us+f3", speed: int = 160, trim: bool = True) -> np.ndarray:
    """16 kHz float32 speech made by espeak-ng; leading/trailing silence trimmed when `trim`."""
    need_espeak()
    x = np.frombuffer(_espeak_cached(text, voice, speed), dtype=np.float32).copy()
    if trim:
        loud = np.flatnonzero(np.abs(x) > 0.01)
        x = x[loud[0]: loud[-1] + 1]
    return x


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), dtype=np.float32)


def tone(seconds: float, freq: float = 440.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
