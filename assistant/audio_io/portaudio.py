"""The PortAudio backend (sounddevice): a microphone stream and a speaker stream, each at
the device's own native rate. Mic audio is resampled to 16 kHz (streaming soxr) in
the PortAudio callback thread and handed to the event loop; the speaker callback
takes its blocks from the playback queue, which resamples replies to the device
rate. A stream that ends by itself (device unplugged, driver error) is reported
as `DeviceLost` on the next `read()`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import numpy as np
import soxr

from stepvoice.assistant.audio_io.backend import MIC_RATE, AudioBackend, DeviceLost, MicBlock
from stepvoice.assistant.audio_io.devices import Device, check_rate, find_device, sounddevice
from stepvoice.assistant.audio_io.playback import PlaybackQueue
from stepvoice.engine.errors import AudioError

log = logging.getLogger(__name__)


class SoundDeviceAudio(AudioBackend):
    """Mic and speaker through PortAudio. Devices: None (system default), an index, or a name.
    `input_rate` / `output_rate` override the devices' native rates (default: native)."""

    def __init__(
        self,
        input_device: str | int | None = None,
        output_device: str | int | None = None,
        *,
        input_rate: float | None = None,
        output_rate: float | None = None,
        block_s: float = 0.02,
    ):
        super().__init__()
        self.input_spec, self.output_spec = input_device, output_device
        self.input_rate_override, self.output_rate_override = input_rate, output_rate
        self.block_s = block_s
        self.input: Device | None = None
        self.output: Device | None = None
        self._in_stream: Any = None
        self._out_stream: Any = None
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resampler: soxr.ResampleStream | None = None
        self.playback = PlaybackQueue(24000, clock=self.clock)  # replaced by start() at the device rate
        self.overflows = 0  # input blocks the device reported as overflowed
        self.underflows = 0

    @property
    def description(self) -> str:  # type: ignore[override]
        names = [f"{k} {d.name!r}" for k, d in (("input", self.input), ("output", self.output)) if d is not None]
        return "sound devices (" + ", ".join(names) + ")" if names else "sound devices"

    async def start(self) -> None:
        sd = sounddevice()
        self._loop = asyncio.get_running_loop()
        self._blocks = asyncio.Queue()
        self._closing.clear()
        self.input = find_device(self.input_spec, "input")
        self.output = find_device(self.output_spec, "output")
        in_rate = int(self.input_rate_override or self.input.default_samplerate)
        out_rate = int(self.output_rate_override or self.output.default_samplerate)
        check_rate(self.input, "input", in_rate)
        check_rate(self.output, "output", out_rate)
        self._resampler = soxr.ResampleStream(in_rate, MIC_RATE, 1, dtype="float32") if in_rate != MIC_RATE else None
        if self.playback.device_rate != out_rate:
            self.playback = PlaybackQueue(out_rate, clock=self.clock)
        try:
            self._out_stream = sd.OutputStream(
                device=self.output.index, samplerate=out_rate, channels=1, dtype="float32",
                blocksize=max(1, int(out_rate * self.block_s)), latency="low",
                callback=self._speaker, finished_callback=lambda: self._finished("output"))
            self._in_stream = sd.InputStream(
                device=self.input.index, samplerate=in_rate, channels=1, dtype="float32",
                blocksize=max(1, int(in_rate * self.block_s)), latency="low",
                callback=self._mic, finished_callback=lambda: self._finished("input"))
            self._out_stream.start()
            self._in_stream.start()
        except Exception as e:  # PortAudioError: busy, vanished, bad parameters
            await self.close()
            raise AudioError(f"cannot open {self.description}: {e}") from None

    async def close(self) -> None:
        self._closing.set()
        for stream in (self._in_stream, self._out_stream):
            if stream is None:
                continue
            try:
                stream.abort(ignore_errors=True)  # abort, not stop: do not wait for buffers to drain
                stream.close(ignore_errors=True)
            except Exception:  # noqa: BLE001  (a vanished device may fail to close; nothing to keep)
                log.debug("closing a stream failed", exc_info=True)
        self._in_stream = self._out_stream = None

    # ---- PortAudio callback threads -------------------------------------------------

    def _mic(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        t = self.clock()
        x = indata[:, 0]
        x = self._resampler.resample_chunk(x) if self._resampler is not None else x.copy()
        if x.size and self._loop is not None:
            self._loop.call_soon_threadsafe(self._deliver, MicBlock(x, t))

    def _speaker(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status and status.output_underflow:
            self.underflows += 1
        self.playback.read(frames, outdata[:, 0])

    def _finished(self, which: str) -> None:
        if self._closing.is_set() or self._loop is None:
            return
        err = DeviceLost(f"the {which} device stopped ({self.description}); was it unplugged?")
        try:
            self._loop.call_soon_threadsafe(self._deliver, err)
        except RuntimeError:  # the event loop is already closed
            pass
