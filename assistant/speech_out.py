"""Speech codes -> 24 kHz PCM chunks, with the session's current voice.

One `SpeechOut` per session. Each spoken reply segment (one generation) is
one token2wav stream; the voice prompt is looked up when a segment starts, so
a voice switched by a tool (timbre_rag) is heard from the next segment on.
All token2wav work runs in worker threads, opening a stream included (for a
voice whose stream start is not cached yet that runs the prompt through the
flow: seconds on a CPU), so the event loop keeps serving (VAD, barge-in,
websockets) while audio is prepared and synthesised.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import numpy as np

from stepvoice.engine.events import AudioChunk

SAMPLE_RATE = 24000
log = logging.getLogger(__name__)


class SpeechOut:
    """`push(codes)` / `finish()` return the PCM ready so far as an `AudioChunk` (or None)."""

    def __init__(self, token2wav: Any, voice_prompt: Callable[[str | None], Any], voice: str | None = None):
        self.token2wav = token2wav
        self._voice_prompt = voice_prompt  # name -> VoicePrompt (cached by its owner)
        self.voice = voice
        self._stream: Any = None
        self.stream_voice: str | None = None  # the voice of the segment in progress
        self.sample_rate = int(getattr(token2wav, "sample_rate", SAMPLE_RATE))
        self.error: str | None = None  # the latest synthesis failure, for the caller to report
        self._failed = False
        self._warming: asyncio.Task | None = None
        self._segment = 0  # bumped by abort(): a stream opened for an aborted segment is dropped

    def set_voice(self, name: str | None) -> None:
        """Used from the next segment on (a segment in progress keeps its voice); its
        stream start is prepared in the background when an event loop runs."""
        self.voice = name
        self.warm_in_background()

    async def warm(self) -> None:
        """Prepare the current voice now: its prompt and token2wav's stream start (the
        prompt through the flow: most of a cold first chunk's latency, seconds on a CPU),
        so the next reply's first chunk does not pay for them."""
        prompt = await asyncio.to_thread(self._voice_prompt, self.voice)
        warm = getattr(self.token2wav, "warm", None)
        if warm is not None:
            await asyncio.to_thread(warm, prompt)

    def warm_in_background(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the first segment prepares it
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()  # only the newest voice matters (its thread still finishes)
        self._warming = loop.create_task(self._warm_quietly())

    async def _warm_quietly(self) -> None:
        try:
            await self.warm()
        except asyncio.CancelledError:
            pass
        except Exception as e:  # the first segment will report it if it persists
            log.warning("could not prepare voice %r ahead of time: %s", self.voice, e)

    async def push(self, codes: tuple[int, ...] | list[int]) -> AudioChunk | None:
        """PCM for `codes`. A synthesis failure mutes the rest of the segment (the text goes on) and is
        kept in `self.error`, rather than ending the reply."""
        if not codes or self._failed:
            return None
        try:
            if self._stream is None and not await self._start():
                return None  # aborted (barge-in) while the stream was being opened
            pcm = await asyncio.to_thread(self._stream.push, list(codes))
        except Exception as e:
            self._fail(e)
            return None
        return self._chunk(pcm)

    async def finish(self) -> AudioChunk | None:
        """End the segment: flush what token2wav still holds (its look-ahead and overlap)."""
        stream, self._stream = self._stream, None
        failed, self._failed = self._failed, False
        if stream is None or failed:
            return None
        try:
            pcm = await asyncio.to_thread(stream.finish)
        except Exception as e:
            self._fail(e)
            self._failed = False
            return None
        return self._chunk(pcm)

    def abort(self) -> None:
        """Drop the segment in progress without synthesising the rest (barge-in)."""
        self._stream = None
        self._failed = False
        self._segment += 1

    def _fail(self, error: Exception) -> None:
        log.warning("speech synthesis failed, this reply continues without audio: %s", error)
        self.error = f"speech synthesis failed: {error}"
        self._stream = None
        self._failed = True

    async def _start(self) -> bool:
        """Open the segment's stream in a worker thread; False when the segment was aborted meanwhile."""
        voice, segment = self.voice, self._segment
        stream = await asyncio.to_thread(self._open_stream, voice)
        if segment != self._segment:
            return False
        self._stream, self.stream_voice = stream, voice
        return True

    def _open_stream(self, voice: str | None) -> Any:
        return self.token2wav.stream(self._voice_prompt(voice))

    def _chunk(self, pcm: Any) -> AudioChunk | None:
        if pcm is None:
            return None
        pcm = np.asarray(pcm)
        if pcm.dtype == np.int16:  # some streams hand out int16 PCM like the official code
            pcm = pcm.astype(np.float32) / 32768.0
        pcm = pcm.astype(np.float32, copy=False).reshape(-1)
        if pcm.size == 0:
            return None
        return AudioChunk(pcm, self.sample_rate)
