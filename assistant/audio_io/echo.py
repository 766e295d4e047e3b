"""Acoustic echo cancellation for open speakers, with WebRTC's audio processing module
(AEC3) as shipped in the `livekit` wheel (optional extra: pip install 'stepvoice[aec]').

The speaker side taps every block it hands to the device (`far`, any rate: it is
resampled to 16 kHz); the mic side passes its 16 kHz blocks through `near`, which
returns the same amount of audio with the reply's echo removed (10 ms frames,
so the output lags the input by less than 10 ms). One object per stream pair.
"""
from __future__ import annotations

import threading
from collections import deque

import numpy as np
import soxr

from stepvoice.engine.errors import ConfigError

RATE = 16000
FRAME = 160  # 10 ms: the only frame size the module takes


def _i16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


class EchoCanceller:
    def __init__(self, stream_delay_ms: int = 40):
        try:
            from livekit import rtc
        except ImportError:
            raise ConfigError("echo cancellation needs the livekit package: pip install 'stepvoice[aec]'") from None
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)
        self._apm.set_stream_delay_ms(stream_delay_ms)  # a first guess; AEC3 estimates the delay itself
        self._lock = threading.Lock()
        self._far: deque[np.ndarray] = deque()
        self._far_pending = np.zeros(0, np.float32)
        self._far_rate = 0
        self._far_resampler: soxr.ResampleStream | None = None
        self._near_pending = np.zeros(0, np.float32)
        self._out = np.zeros(0, np.float32)

    def far(self, samples: np.ndarray, sample_rate: int) -> None:
        """What the speaker is playing now (called from the speaker's thread)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sample_rate != RATE:
            if self._far_resampler is None or self._far_rate != sample_rate:
                self._far_resampler = soxr.ResampleStream(sample_rate, RATE, 1, dtype="float32")
                self._far_rate = sample_rate
            x = self._far_resampler.resample_chunk(x)
        with self._lock:
            buf = np.concatenate([self._far_pending, x])
            n = len(buf) // FRAME
            for i in range(n):
                self._far.append(buf[i * FRAME:(i + 1) * FRAME])
            self._far_pending = buf[n * FRAME:]

    def near(self, samples: np.ndarray) -> np.ndarray:
        """Mic audio (16 kHz) with the echo removed; returns as many samples as it was given."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._near_pending, x])
        n = len(buf) // FRAME
        cleaned = []
        for i in range(n):
            with self._lock:
                far = list(self._far)
                self._far.clear()
            for f in far:  # reverse stream first: the module matches it against the mic
                self._apm.process_reverse_stream(self._rtc.AudioFrame(_i16(f), RATE, 1, FRAME))
            frame = self._rtc.AudioFrame(_i16(buf[i * FRAME:(i + 1) * FRAME]), RATE, 1, FRAME)
            self._apm.process_stream(frame)
            cleaned.append(np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32767)
        self._near_pending = buf[n * FRAME:]
        out = np.concatenate([self._out, *cleaned]) if cleaned else self._out
        take = min(len(x), len(out))  # keep the block size; the first call may return fewer samples
        result, self._out = out[:take], out[take:]
        if take < len(x):
            result = np.concatenate([np.zeros(len(x) - take, np.float32), result])
        return result
