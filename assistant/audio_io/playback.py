"""A playback queue between the session (producer) and a speaker (consumer).

The producer `put`s PCM at any rate; it is resampled (streaming soxr, so chunk
joins stay seamless) to the device rate. The consumer (a PortAudio callback
thread, or the in-process fake speaker) `read`s fixed blocks and gets silence
when nothing is queued. `stop()` drops everything not yet handed out, so a stop
takes effect within one device block. `played` counts the queued samples really
handed to the device, which is what barge-in truncation needs.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import numpy as np
import soxr

from stepvoice.engine.errors import AudioError


class PlaybackQueue:
    def __init__(self, device_rate: int, clock: Callable[[], float] = time.perf_counter):
        if device_rate <= 0:
            raise AudioError(f"bad output sample rate {device_rate}")
        self.device_rate = int(device_rate)
        self.clock = clock
        self._lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0  # samples of _chunks[0] already handed out
        self._pending = 0
        self._resampler: soxr.ResampleStream | None = None
        self._source_rate = 0
        self.played = 0  # queued samples handed to the device since creation
        self.mark_played = 0  # `played` at the last mark()
        self.first_read_at: float | None = None  # clock time of the first sample handed out after mark()
        # called with every block handed to the device (silence included), e.g. an echo canceller's far end
        self.tap: Callable[[np.ndarray, int], None] | None = None

    # ---- producer side -------------------------------------------------------------

    def put(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue mono PCM (float32 in [-1, 1]) at `sample_rate`."""
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if sample_rate != self.device_rate:
            if self._resampler is None or self._source_rate != sample_rate:
                self._resampler = soxr.ResampleStream(sample_rate, self.device_rate, 1, dtype="float32")
                self._source_rate = sample_rate
            pcm = self._resampler.resample_chunk(pcm)
        self._append(pcm)

    def end_of_stream(self) -> None:
        """The producer's reply is complete: flush what the resampler still holds."""
        if self._resampler is not None:
            self._append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._resampler = None

    def _append(self, pcm: np.ndarray) -> None:
        if pcm.size == 0:
            return
        with self._lock:
            self._chunks.append(np.clip(pcm, -1.0, 1.0))
            self._pending += pcm.size

    def mark(self) -> None:
        """Start a new reply: `played_since_mark` and `first_read_at` count from here."""
        with self._lock:
            self.mark_played = self.played
            self.first_read_at = None

    def stop(self) -> int:
        """Drop all queued audio now; returns the samples played since `mark()`."""
        with self._lock:
            self._chunks.clear()
            self._offset = 0
            self._pending = 0
            self._resampler = None
            return self.played - self.mark_played

    # ---- consumer side -------------------------------------------------------------

    def read(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """The next `n` samples for the device (silence where nothing is queued)."""
        buf = out if out is not None else np.empty(n, dtype=np.float32)
        filled = 0
        with self._lock:
            while filled < n and self._chunks:
                head = self._chunks[0]
                take = min(n - filled, head.size - self._offset)
                buf[filled:filled + take] = head[self._offset:self._offset + take]
                filled += take
                self._offset += take
                if self._offset >= head.size:
                    self._chunks.popleft()
                    self._offset = 0
            if filled:
                if self.first_read_at is None:
                    self.first_read_at = self.clock()
                self._pending -= filled
                self.played += filled
        buf[filled:n] = 0.0
        if self.tap is not None:
            self.tap(buf[:n], self.device_rate)
        return buf

    # ---- state ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Samples queued and not yet handed to the device."""
        return self._pending

    @property
    def played_since_mark(self) -> int:
        return self.played - self.mark_played

    def seconds(self, samples: int) -> float:
        return samples / self.device_rate
