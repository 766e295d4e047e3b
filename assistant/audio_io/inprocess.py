"""An audio backend without hardware: the "microphone" plays arrays or wav files and
the "speaker" records what it was given, both on one clock ticking in real or
accelerated time (`speed`). Used by tests, the latency benchmark, and for
driving the voice loop from files.
"""
from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Iterable

import numpy as np
import soxr

from stepvoice.assistant.audio_io.backend import MIC_RATE, AudioBackend, DeviceLost, EndOfInput, MicBlock
from stepvoice.assistant.audio_io.playback import PlaybackQueue
from stepvoice.engine.errors import AudioError


def _as_samples(item: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(item, (str, Path)):
        from stepvoice.engine.audio import load_audio  # 16 kHz mono float32, clear errors

        return load_audio(item)
    return np.asarray(item, dtype=np.float32).reshape(-1)


class InProcessAudio(AudioBackend):
    """Mic fed from `inputs` (played one after another, then silence), speaker recorded.

    `finite=True` ends the input (`EndOfInput`) `tail_s` seconds after the inputs
    run out; otherwise silence follows forever. `echo_gain` > 0 makes the mic also
    hear the speaker, `echo_delay_s` later (an open speaker in a room). One tick moves `block_s` of
    audio each way; ticks run every `block_s / speed` seconds of wall time.
    """

    description = "in-process audio"

    def __init__(
        self,
        inputs: Iterable[np.ndarray | str | Path] = (),
        *,
        speed: float = 1.0,
        block_s: float = 0.032,
        output_rate: int = 24000,
        finite: bool = False,
        tail_s: float = 1.0,
        echo_gain: float = 0.0,
        echo_delay_s: float = 0.05,
    ):
        super().__init__()
        if speed <= 0:
            raise AudioError("in-process audio speed must be > 0")
        self.speed = speed
        self.block_in = int(round(block_s * MIC_RATE))
        self.block_out = int(round(block_s * output_rate))
        self.block_s = block_s
        self.playback = PlaybackQueue(output_rate, clock=self.clock)
        self._source: deque[np.ndarray] = deque(_as_samples(x) for x in inputs)
        self._offset = 0
        self.finite = finite
        self.tail_s = tail_s
        self._recorded: list[np.ndarray] = []
        self._task: asyncio.Task | None = None
        self._idle_ticks = 0
        self.mic_samples = 0  # samples delivered to the loop
        # where each injection reached the mic: (mic samples before it, speaker `played` count, output length)
        self.injections: list[tuple[int, int, int]] = []
        self._pending_injection = False
        self._fail: BaseException | None = None
        self.echo_gain = echo_gain
        self._echo_line = np.zeros(int(round(echo_delay_s * MIC_RATE)), np.float32)
        self._echo_resampler = soxr.ResampleStream(output_rate, MIC_RATE, 1, dtype="float32") if echo_gain else None

    # ---- feeding -------------------------------------------------------------------

    def feed(self, item: np.ndarray | str | Path) -> None:
        """Queue more input after what is already queued."""
        self._source.append(_as_samples(item))

    def inject(self, item: np.ndarray | str | Path) -> None:
        """Make `item` the very next thing the mic hears (e.g. the user talking over a reply)."""
        samples = _as_samples(item)
        if self._source and self._offset:
            self._source[0] = self._source[0][self._offset:]
            self._offset = 0
        self._source.appendleft(samples)
        self._pending_injection = True

    def fail(self, message: str = "the input device disappeared") -> None:
        """Simulate a device that vanishes: the next read raises `DeviceLost`."""
        self._fail = DeviceLost(f"{self.description}: {message}")

    @property
    def output(self) -> np.ndarray:
        """Everything the speaker was given (silence included), at the output rate."""
        return np.concatenate(self._recorded) if self._recorded else np.zeros(0, np.float32)

    # ---- clock -----------------------------------------------------------------------

    async def start(self) -> None:
        self._blocks = asyncio.Queue()
        self._fail = None
        self._task = asyncio.create_task(self._run(), name="inprocess-audio")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.block_s / self.speed
        next_t = loop.time()
        ended = False
        while True:
            next_t += period
            delay = next_t - loop.time()
            await asyncio.sleep(max(0.0, delay))
            if self._fail is not None:
                self._deliver(self._fail)
                return
            # speaker first: this tick's output block leaves while the mic block comes in
            played = self.playback.read(self.block_out).copy()
            self._recorded.append(played)
            if self._echo_resampler is not None:
                self._echo_line = np.concatenate([self._echo_line, self._echo_resampler.resample_chunk(played)])
            if self._pending_injection:
                self.injections.append((self.mic_samples, self.playback.played, len(self._recorded) * self.block_out))
                self._pending_injection = False
            if ended:
                continue  # the speaker keeps playing after the input ran out
            block = self._take(self.block_in)
            if block is None:
                self._deliver(EndOfInput())
                ended = True
                continue
            if self._echo_resampler is not None:
                echo = self._echo_line[: block.size]
                block[: echo.size] += self.echo_gain * echo
                self._echo_line = self._echo_line[echo.size:]
            self.mic_samples += block.size
            self._deliver(MicBlock(block, self.clock()))

    def _take(self, n: int) -> np.ndarray | None:
        out = np.zeros(n, dtype=np.float32)
        filled = 0
        while filled < n and self._source:
            head = self._source[0]
            take = min(n - filled, head.size - self._offset)
            out[filled:filled + take] = head[self._offset:self._offset + take]
            filled += take
            self._offset += take
            if self._offset >= head.size:
                self._source.popleft()
                self._offset = 0
        if filled == 0 and self.finite:
            self._idle_ticks += 1
            if self._idle_ticks * self.block_s >= self.tail_s:
                return None
        elif filled:
            self._idle_ticks = 0
        return out
