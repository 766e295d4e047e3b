"""What the voice loop needs from audio hardware: mic blocks in, a playback queue out.

Two implementations: `InProcessAudio` (arrays or wav files fed in real or
accelerated time, the speaker recorded; for tests, benchmarks and files) and
`SoundDeviceAudio` (PortAudio through sounddevice). Mic blocks always arrive
as 16 kHz float32 mono, whatever the device's own rate.
"""
from __future__ import annotations

import abc
import asyncio
import time
from dataclasses import dataclass

import numpy as np

from stepvoice.assistant.audio_io.playback import PlaybackQueue
from stepvoice.engine.errors import AudioError

MIC_RATE = 16000


@dataclass(frozen=True, eq=False)
class MicBlock:
    samples: np.ndarray  # 16 kHz float32 mono
    t: float  # clock time the block was captured (end of the block)


class EndOfInput(Exception):
    """The input source has nothing more (in-process sources only; a microphone never ends)."""


class DeviceLost(AudioError):
    """A device stopped delivering or accepting audio mid-stream."""


class AudioBackend(abc.ABC):
    """Mic + speaker. `start()` opens the streams, `read()` returns the next mic block,
    `playback` is where the speaker takes its audio from, `close()` releases everything."""

    playback: PlaybackQueue
    description: str = "audio"

    def __init__(self) -> None:
        self._blocks: asyncio.Queue[MicBlock | BaseException] | None = None

    def clock(self) -> float:
        return time.perf_counter()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def read(self) -> MicBlock:
        """The next mic block. Raises `DeviceLost` when the device fails and `EndOfInput`
        when a finite source is exhausted."""
        if self._blocks is None:
            raise AudioError(f"{self.description}: read() before start()")
        # no asyncio.wait_for here: on 3.11 it can swallow a cancel that races a new block;
        # stalls are reported through report() by the voice loop's watchdog instead
        item = await self._blocks.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def report(self, error: BaseException) -> None:
        """Make the next `read()` raise `error` (device failures, a stalled input)."""
        self._deliver(error)

    def _deliver(self, item: MicBlock | BaseException) -> None:
        if self._blocks is not None:
            self._blocks.put_nowait(item)
