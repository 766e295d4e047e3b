"""Speech codes -> 24 kHz PCM chunks, with the session's current voice.

One `SpeechOut` per session. Each spoken reply segment (one generation) is
one token2wav stream; the voice prompt is looked up when a segment starts, so
a voice switched by a tool (timbre_rag) is heard from the next segment on.
token2wav work runs in a worker thread so the event loop keeps serving
(barge-in, websockets) while audio is synthesised.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import numpy as np

from engine.events import AudioChunk

SAMPLE_RATE = 24000


class SpeechOut:
    """`push(codes)` / `finish()` return the PCM ready so far as an `AudioChunk` (or None)."""

    def __init__(self, token2wav: Any, voice_prompt: Callable[[str | None], Any], voice: str | None = None):
        self.token2wav = token2wav
        self._voice_prompt = voice_prompt  # name -> VoicePrompt (cached by its owner)
        self.voice = voice
        self._stream: Any = None
        self.stream_voice: str | None = None  # the voice of the segment in progress
        self.sample_rate = int(getattr(token2wav, "sample_rate", SAMPLE_RATE))

    def set_voice(self, name: str | None) -> None:
        """Used from the next segment on (a segment in progress keeps its voice)."""
        self.voice = name

    async def push(self, codes: tuple[int, ...] | list[int]) -> AudioChunk | None:
        if not codes:
            return None
        if self._stream is None:
            await self._start()
        pcm = await asyncio.to_thread(self._stream.push, list(codes))
        return self._chunk(pcm)

    async def finish(self) -> AudioChunk | None:
        """End the segment: flush what token2wav still holds (its look-ahead and overlap)."""
        if self._stream is None:
            return None
        stream, self._stream = self._stream, None
        pcm = await asyncio.to_thread(stream.finish)
        return self._chunk(pcm)

    def abort(self) -> None:
        """Drop the segment in progress without synthesising the rest (barge-in)."""
        self._stream = None

    async def _start(self) -> None:
        voice = self.voice
        prompt = await asyncio.to_thread(self._voice_prompt, voice)
        self._stream = self.token2wav.stream(prompt)
        self.stream_voice = voice

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
