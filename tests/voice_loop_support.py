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
    assert shutil.which("espeak-ng"), "espeak-ng is not installed (scripts/setup.sh installs it, as root)"


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


SAMPLES_PER_CODE = 960  # 24 kHz / 25 codes per second


class ToneToken2Wav:
    """A token2wav stand-in with the real streaming interface: 40 ms of a code-dependent
    tone per code, so played audio can be mapped back to codes."""

    sample_rate = 24000

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.streams = 0

    def prepare_voice(self, wav):  # noqa: ANN001
        return ("voice", len(wav) if hasattr(wav, "__len__") else 0)

    def stream(self, voice, first_chunk: int = 25):  # noqa: ANN001
        self.streams += 1
        return _ToneStream(self.delay_s)


class _ToneStream:
    def __init__(self, delay_s: float):
        self.delay_s = delay_s

    def push(self, codes) -> np.ndarray:  # noqa: ANN001
        import time

        if self.delay_s:
            time.sleep(self.delay_s)
        return np.concatenate([tone(SAMPLES_PER_CODE / 24000, 200 + (c % 50) * 10, sr=24000) for c in codes]) \
            if len(codes) else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        return np.zeros(0, np.float32)


class SpeechToken2Wav(ToneToken2Wav):
    """Like ToneToken2Wav, but each code plays the next 40 ms of a real (espeak-ng) recording,
    so the reply sounds like speech to a VAD (for echo tests)."""

    def __init__(self, text: str):
        super().__init__()
        self.clip = soxr.resample(espeak(text, voice="en-us+m3"), SR, 24000).astype(np.float32) * 0.5

    def stream(self, voice, first_chunk: int = 25):  # noqa: ANN001
        return _ClipStream(self.clip)


class _ClipStream:
    def __init__(self, clip: np.ndarray):
        self.clip, self.pos = clip, 0

    def push(self, codes) -> np.ndarray:  # noqa: ANN001
        n = SAMPLES_PER_CODE * len(codes)
        idx = (self.pos + np.arange(n)) % len(self.clip)
        self.pos += n
        return self.clip[idx]

    def finish(self) -> np.ndarray:
        return np.zeros(0, np.float32)


class ToneVoiceBank:
    """Just enough of a voice bank for the Session to ask for a voice prompt."""

    def __init__(self, t2w: ToneToken2Wav):
        self.t2w = t2w

    def prompt(self, name: str):  # noqa: ANN201
        return self.t2w.prepare_voice(np.zeros(16000, np.float32))

    def get(self, name: str):  # noqa: ANN201
        return name


def make_session(replies: list, synth_delay_s: float = 0.0, token2wav: ToneToken2Wav | None = None):
    """(assistant.session.Session, scripted backend) for `replies` (ScriptedBackend YAML form),
    speaking through `token2wav` (default `ToneToken2Wav`)."""
    from stepvoice.assistant.session import Session
    from stepvoice.engine.backends.scripted import ScriptedBackend

    backend = ScriptedBackend.from_data({"replies": replies})
    t2w = token2wav or ToneToken2Wav(synth_delay_s)
    session = Session(backend, token2wav=t2w, voice_bank=ToneVoiceBank(t2w), voice="test")
    return session, backend
