"""Turn a stream of 16 kHz samples into utterances: speech start, speech end after a
silence hangover, pre-roll so the first syllable is kept.

The `Endpointer` is fed blocks of any length and a VAD (any callable that maps a
512-sample frame to a speech probability, normally `assistant.vad.SileroVAD`).
It answers `SpeechStart` as soon as speech begins (the voice loop uses it for
barge-in) and `SpeechEnd` with the whole utterance once `silence_ms` of silence
follow it. Times are seconds of stream time (samples fed / 16000), so the same
code runs in real time, accelerated, or on a file.

Push-to-talk uses `begin()` / `end()` instead of the VAD deciding.

With `pause_ms` set (speculative replies), a shorter silence inside an
utterance answers `SpeechPause` with the utterance so far (the same samples a
`SpeechEnd` at that point would carry), and speech after such a pause answers
`SpeechResumed`; the hangover still decides the end.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from stepvoice.engine.errors import ConfigError

SAMPLE_RATE = 16000
FRAME = 512
FRAME_S = FRAME / SAMPLE_RATE


@dataclass
class EndpointConfig:
    threshold: float = 0.5  # speech when p >= threshold
    neg_threshold: float | None = None  # silence when p < neg_threshold (default threshold - 0.15, as Silero's own iterator)
    start_frames: int = 1  # consecutive speech frames that start speech (1 frame = 32 ms)
    silence_ms: float = 500.0  # hangover: silence that ends an utterance
    pre_roll_ms: float = 200.0  # audio kept from before the detected start
    tail_ms: float = 100.0  # silence kept after the last speech frame
    min_speech_ms: float = 150.0  # shorter bursts (clicks, coughs) are dropped
    max_utterance_s: float = 30.0  # forced end of a very long utterance
    pause_ms: float | None = None  # speculation: a silence this long is a SpeechPause (None: off)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"VAD threshold must be between 0 and 1, got {self.threshold}")
        if self.neg_threshold is None:
            self.neg_threshold = max(0.01, self.threshold - 0.15)
        if not 0.0 < self.neg_threshold <= self.threshold:
            raise ConfigError("VAD neg_threshold must be in (0, threshold]")
        if self.start_frames < 1:
            raise ConfigError("start_frames must be >= 1")
        for name in ("silence_ms", "pre_roll_ms", "tail_ms", "min_speech_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.silence_ms < FRAME_S * 1000:
            raise ConfigError(f"silence_ms must be at least one VAD frame ({FRAME_S * 1000:.0f} ms)")
        if self.max_utterance_s <= 0:
            raise ConfigError("max_utterance_s must be > 0")
        if self.pause_ms is not None and not FRAME_S * 1000 <= self.pause_ms < self.silence_ms:
            raise ConfigError(f"pause_ms must be at least one VAD frame and shorter than silence_ms ({self.silence_ms:g})")

    def frames(self, ms: float) -> int:
        """Whole VAD frames covering `ms` (rounded up: a hangover is never shorter than asked)."""
        return int(math.ceil(ms / 1000 / FRAME_S - 1e-9))


@dataclass(frozen=True)
class SpeechStart:
    t: float  # stream time of the first speech frame


@dataclass(frozen=True, eq=False)
class SpeechEnd:
    samples: np.ndarray  # the utterance, 16 kHz float32, pre-roll and tail included
    start_t: float  # first speech frame
    end_t: float  # end of the last speech frame
    detected_t: float  # when the hangover ran out (end_t + hangover)
    forced: bool = False  # cut by max_utterance_s or ended by push-to-talk

    @property
    def hangover_s(self) -> float:
        return self.detected_t - self.end_t


@dataclass(frozen=True, eq=False)
class SpeechPause:
    """A short pause: the utterance so far, in case it is the end (speculation)."""

    samples: np.ndarray
    start_t: float
    end_t: float  # end of the last speech frame (a SpeechEnd with the same end_t has the same samples)
    detected_t: float


@dataclass(frozen=True)
class SpeechResumed:
    """Speech again after a SpeechPause: that pause was not the end."""

    t: float


@dataclass(frozen=True)
class SpeechDropped:
    """A start that turned out too short to be speech."""

    start_t: float
    detected_t: float


EndpointEvent = Union[SpeechStart, SpeechEnd, SpeechDropped, SpeechPause, SpeechResumed]


class Endpointer:
    """Speech start/stop detection over one stream."""

    def __init__(self, vad: Callable[[np.ndarray], float], config: EndpointConfig | None = None):
        self.vad = vad
        self.config = config or EndpointConfig()
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_seen = 0
        # the pre-roll ring also holds the frames that confirm a start
        self._pre = deque(maxlen=self.config.frames(self.config.pre_roll_ms) + self.config.start_frames)
        self._reset_speech()

    @property
    def now(self) -> float:
        """Stream time of everything decided so far."""
        return self._frames_seen * FRAME_S

    @property
    def in_speech(self) -> bool:
        return self._speaking

    def _reset_speech(self) -> None:
        self._speaking = False
        self._manual = False
        self._run = 0  # consecutive speech frames while idle
        self._frames: list[np.ndarray] = []
        self._start_frame = 0
        self._last_speech_frame = 0
        self._silence = 0
        self._paused = False  # a SpeechPause was sent for the current silence

    def reset(self) -> None:
        """Drop any speech in progress and the pre-roll (e.g. while the assistant talks, half duplex)."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._pre.clear()
        self._reset_speech()
        if hasattr(self.vad, "reset"):
            self.vad.reset()

    def push(self, samples: np.ndarray) -> list[EndpointEvent]:
        """Feed the next samples of the stream; returns what they decided."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(buf) // FRAME
        events: list[EndpointEvent] = []
        for i in range(n):
            events.extend(self._frame(buf[i * FRAME:(i + 1) * FRAME]))
        self._pending = buf[n * FRAME:].copy()
        return events

    def begin(self) -> SpeechStart:
        """Push-to-talk pressed: speech starts now, whatever the VAD says."""
        if not self._speaking:
            self._speaking = True
            self._frames = list(self._pre)
            self._start_frame = self._frames_seen
            self._last_speech_frame = self._frames_seen
        self._manual = True
        return SpeechStart(self._start_frame * FRAME_S)

    def end(self) -> SpeechEnd | SpeechDropped | None:
        """Push-to-talk released: the utterance so far (None if none was started)."""
        if not self._speaking:
            return None
        if self._pending.size:  # keep the partial frame the user spoke into
            self._frames.append(self._pending)
            self._pending = np.zeros(0, dtype=np.float32)
        self._last_speech_frame = self._frames_seen - 1
        return self._finish(forced=True, keep_tail=False)

    def _frame(self, frame: np.ndarray) -> list[EndpointEvent]:
        cfg = self.config
        p = self.vad(frame)
        index = self._frames_seen
        self._frames_seen += 1
        if not self._speaking:
            self._pre.append(frame)
            self._run = self._run + 1 if p >= cfg.threshold else 0
            if self._run < cfg.start_frames:
                return []
            self._speaking = True
            self._frames = list(self._pre)  # pre-roll already holds the start frames
            self._start_frame = index - cfg.start_frames + 1
            self._last_speech_frame = index
            self._silence = 0
            return [SpeechStart(self._start_frame * FRAME_S)]
        self._frames.append(frame)
        if self._manual:
            return []
        events: list[EndpointEvent] = []
        if p >= cfg.neg_threshold:
            self._silence = 0
            self._last_speech_frame = index
            if self._paused:
                self._paused = False
                events.append(SpeechResumed(index * FRAME_S))
        else:
            self._silence += 1
        if self._silence >= cfg.frames(cfg.silence_ms):
            return [self._finish(forced=False, keep_tail=True)]
        if (cfg.pause_ms is not None and not self._paused and self._silence == cfg.frames(cfg.pause_ms)
                and (self._last_speech_frame + 1 - self._start_frame) * FRAME_S * 1000 >= cfg.min_speech_ms):
            self._paused = True
            events.append(SpeechPause(np.concatenate(self._tail_trimmed()), self._start_frame * FRAME_S,
                                      (self._last_speech_frame + 1) * FRAME_S, self.now))
        if (self._frames_seen - self._start_frame) * FRAME_S >= cfg.max_utterance_s:
            self._last_speech_frame = index
            return [self._finish(forced=True, keep_tail=False)]
        return events

    def _tail_trimmed(self) -> list[np.ndarray]:
        """The frames of the utterance without the silence beyond `tail_ms`."""
        drop = max(0, self._silence - self.config.frames(self.config.tail_ms))
        return self._frames[: len(self._frames) - drop] if drop else self._frames

    def _finish(self, forced: bool, keep_tail: bool) -> SpeechEnd | SpeechDropped:
        cfg = self.config
        start_t = self._start_frame * FRAME_S
        end_t = (self._last_speech_frame + 1) * FRAME_S
        detected_t = self.now
        if keep_tail:
            frames = self._tail_trimmed()  # trailing silence beyond the tail goes
        else:
            frames = self._frames
        samples = np.concatenate(frames) if frames else np.zeros(0, dtype=np.float32)
        self._pre.clear()
        manual = self._manual
        self._reset_speech()
        if not manual and (end_t - start_t) * 1000 < cfg.min_speech_ms:
            return SpeechDropped(start_t, detected_t)
        return SpeechEnd(samples, start_t, end_t, detected_t, forced=forced)
