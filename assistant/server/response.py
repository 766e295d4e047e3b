"""One response: assistant session events in, Realtime response events out."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from stepvoice.engine.events import AudioChunk, TextDelta, ToolCall, ToolResult, TurnEnd, VoiceChanged
from stepvoice.assistant.server.protocol import (
    PCM_RATE, OutputItem, encode_pcm16, function_output_item, new_id, resample, server_event,
)

if TYPE_CHECKING:
    from stepvoice.assistant.server.realtime import RealtimeConnection, SessionLike

log = logging.getLogger(__name__)


class ResponseRun:
    """One response: session events in, Realtime events out."""

    def __init__(self, conn: "RealtimeConnection", response_id: str, modalities: list[str]):
        self.conn = conn
        self.id = response_id
        self.modalities = modalities
        self.output: list[OutputItem] = []
        self.current: OutputItem | None = None
        self.end: TurnEnd | None = None
        self.usage = {"input_tokens": 0, "output_tokens": 0}

    def _resp(self, status: str, details: dict | None = None) -> dict:
        r = {"id": self.id, "object": "realtime.response", "status": status, "output_modalities": self.modalities,
             "conversation_id": "conv_default", "output": [o.item() for o in self.output]}
        if details:
            r["status_details"] = details
        if status != "in_progress":
            r["usage"] = {**self.usage, "total_tokens": self.usage["input_tokens"] + self.usage["output_tokens"]}
        return r

    def _ids(self, item: OutputItem) -> dict:
        return {"response_id": self.id, "item_id": item.id, "output_index": self.output.index(item)}

    async def run(self, session: "SessionLike", user_input, reply: str, cancel: asyncio.Event) -> None:
        send = self.conn.send
        await send(server_event("response.created", response=self._resp("in_progress")))
        failure: str | None = None
        try:
            async for ev in session.respond(user_input, reply=reply, cancel=cancel):
                await self._event(ev)
        except asyncio.CancelledError:
            failure = None
            self.end = TurnEnd("cancelled")
        except Exception as e:  # the session failed: tell the client, keep the connection
            log.exception("response %s failed", self.id)
            failure = f"{type(e).__name__}: {e}"
        await self._close_current()
        if failure:
            status, details = "failed", {"type": "failed", "error": {"type": "server_error", "message": failure}}
        elif self.end is None or self.end.reason in ("stop",):
            status, details = "completed", None
        elif self.end.reason == "cancelled" or cancel.is_set():
            status, details = "cancelled", {"type": "cancelled", "reason": self.conn._cancel_reason}
        elif self.end.reason == "length":
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        else:
            status = "failed"
            details = {"type": "failed", "error": {"type": "server_error", "code": self.end.reason,
                                                   "message": self.end.error or self.end.reason}}
        await send(server_event("response.done", response=self._resp(status, details)))

    async def _open(self, kind: str) -> OutputItem:
        if self.current is not None and self.current.kind == kind:
            return self.current
        await self._close_current()
        item = OutputItem(new_id("item"), kind)
        self.output.append(item)
        self.current = item
        self.conn._items[item.id] = "message"
        send = self.conn.send
        await send(server_event("response.output_item.added", response_id=self.id, output_index=len(self.output) - 1,
                                item=item.item()))
        await send(server_event("conversation.item.added", item=item.item(), previous_item_id=None))
        await send(server_event("response.content_part.added", content_index=0, part=item.part(), **self._ids(item)))
        return item

    async def _close_current(self) -> None:
        item, self.current = self.current, None
        if item is None:
            return
        send = self.conn.send
        ids = {"content_index": 0, **self._ids(item)}
        if item.kind == "audio":
            await send(server_event("response.output_audio_transcript.done", transcript=item.text, **ids))
            await send(server_event("response.output_audio.done", **ids))
        else:
            await send(server_event("response.output_text.done", text=item.text, **ids))
        item.status = "completed" if not (self.conn._cancel and self.conn._cancel.is_set()) else "incomplete"
        await send(server_event("response.content_part.done", part=item.part(final=True), **ids))
        await send(server_event("response.output_item.done", response_id=self.id, output_index=ids["output_index"],
                                item=item.item()))
        await send(server_event("conversation.item.done", item=item.item(), previous_item_id=None))
        self.conn._last_reply_item = item

    async def _event(self, ev) -> None:
        send = self.conn.send
        if isinstance(ev, TextDelta):
            if ev.channel == "think" or not ev.text:
                return  # reasoning stays on the server
            item = await self._open("audio" if ev.channel == "speech" else "text")
            item.text += ev.text
            etype = "response.output_audio_transcript.delta" if item.kind == "audio" else "response.output_text.delta"
            await send(server_event(etype, content_index=0, delta=ev.text, **self._ids(item)))
        elif isinstance(ev, AudioChunk):
            item = await self._open("audio")
            pcm = ev.pcm if ev.sample_rate == PCM_RATE else resample(ev.pcm, ev.sample_rate, PCM_RATE)
            if len(pcm):
                item.audio_ms += 1000.0 * len(pcm) / PCM_RATE
                await send(server_event("response.output_audio.delta", content_index=0, delta=encode_pcm16(pcm),
                                        **self._ids(item)))
        elif isinstance(ev, ToolCall):
            await self._close_current()
            args = json.dumps(ev.arguments, ensure_ascii=False)
            item = OutputItem(new_id("item"), "function_call", call_id=ev.id, name=ev.name)
            self.output.append(item)
            self.conn._items[item.id] = "function_call"
            idx = len(self.output) - 1
            await send(server_event("response.output_item.added", response_id=self.id, output_index=idx, item=item.item()))
            await send(server_event("conversation.item.added", item=item.item(), previous_item_id=None))
            await send(server_event("response.function_call_arguments.delta", response_id=self.id, item_id=item.id,
                                    output_index=idx, call_id=ev.id, delta=args))
            item.arguments, item.status = args, "completed"
            await send(server_event("response.function_call_arguments.done", response_id=self.id, item_id=item.id,
                                    output_index=idx, call_id=ev.id, name=ev.name, arguments=args))
            await send(server_event("response.output_item.done", response_id=self.id, output_index=idx, item=item.item()))
            await send(server_event("conversation.item.done", item=item.item(), previous_item_id=None))
        elif isinstance(ev, ToolResult):
            await self._close_current()
            item_id = new_id("item")
            self.conn._items[item_id] = "function_call_output"
            out = function_output_item(item_id, ev.call_id, ev.content)
            await send(server_event("conversation.item.added", item=out, previous_item_id=None))
            await send(server_event("conversation.item.done", item=out, previous_item_id=None))
        elif isinstance(ev, VoiceChanged):
            self.conn.settings.voice = ev.name
            await send(server_event("session.updated", session=self.conn.settings.wire(self.conn.factory.model_name)))
        elif isinstance(ev, TurnEnd):
            self.end = ev
            self.usage["input_tokens"] += ev.usage.prompt_tokens
            self.usage["output_tokens"] += ev.usage.completion_tokens
        # SpeechCodes and the voice loop's events carry nothing a Realtime client reads
