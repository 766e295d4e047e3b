"""Input audio transcription (`audio.input.transcription`): committed user audio is
transcribed with the model's own ASR preset and reported with
`conversation.item.input_audio_transcription.delta/completed/failed`.

Off the reply's critical path: one worker per connection takes committed
items in order and runs only while no response is being generated, so the
reply never waits for the transcript. The transcript is written onto the
user turn's audio in history (compaction then keeps it as text) and onto the
conversation item (`conversation.item.retrieve` shows it).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from stepvoice.engine.messages import Audio, Message
from stepvoice.assistant.server.protocol import server_event

if TYPE_CHECKING:
    from stepvoice.assistant.server.realtime import RealtimeConnection

log = logging.getLogger(__name__)


class InputTranscriber:
    def __init__(self, conn: "RealtimeConnection"):
        self.conn = conn
        self.queue: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def submit(self, item_id: str) -> None:
        self.queue.append(item_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._work())
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _work(self) -> None:
        while self.queue:
            while self.conn.responding:  # the reply has the engine first
                self._wake.clear()
                await self._wake.wait()
            item_id = self.queue.pop(0)
            try:
                await self._transcribe(item_id)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one failed transcript is reported, the connection goes on
                log.warning("transcription of %s failed: %s", item_id, e)
                await self.conn.send(server_event(
                    "conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                    error={"type": "transcription_error", "code": "transcription_failed", "message": str(e)}))

    async def _transcribe(self, item_id: str) -> None:
        conn = self.conn
        entry = conn.conversation.get(item_id)
        if entry is None or not entry.messages:
            return  # deleted meanwhile
        message = entry.messages[0]
        transcribe = conn.factory.transcriber(conn._session())
        parts, texts = [], []
        for part in message.content:
            if isinstance(part, Audio) and part.transcript is None:
                text = (await transcribe(part)).strip()
                texts.append(text)
                part = Audio(part.samples, text)
            parts.append(part)
        transcript = " ".join(texts)
        seconds = sum(len(p.samples) for p in parts if isinstance(p, Audio)) / 16000
        await conn.send(server_event("conversation.item.input_audio_transcription.delta", item_id=item_id,
                                     content_index=0, delta=transcript))
        new = Message(message.role, parts)

        def swap() -> None:
            if conn.session is not None:
                history = conn.session.history
                history[:] = [new if m is message else m for m in history]
            entry.messages = [new if m is message else m for m in entry.messages]

        conn._later(swap)
        for part in entry.item.get("content", []):
            if part.get("type") == "input_audio":
                part["transcript"] = transcript  # what conversation.item.retrieve shows from now on
        await conn.send(server_event("conversation.item.input_audio_transcription.completed", item_id=item_id,
                                     content_index=0, transcript=transcript,
                                     usage={"type": "duration", "seconds": round(seconds, 3)}))
