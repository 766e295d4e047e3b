"""One response: what `response.create` asked for, and assistant session events in,
Realtime response events out.

Server-run tools are reported as OpenAI reports its own server-side tools:
an `mcp_call` item (server_label "stepvoice") with `response.mcp_call_*`
events and the output on the item. Only client tools (the session's `tools`)
become `function_call` items, so a client that answers every function call
answers exactly the calls that are its own.
"""
from __future__ import annotations

import asyncio
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stepvoice.engine.events import AudioChunk, TextDelta, ToolCall, ToolResult, TurnEnd, VoiceChanged
from stepvoice.engine.messages import Message, Text
from stepvoice.assistant.server.items import ItemError, message_from_item
from stepvoice.assistant.server.protocol import (
    PCM_RATE, OutputItem, ProtocolError, encode_pcm16, new_id, resample, server_event,
)
from stepvoice.assistant.server.settings import max_output_tokens, output_modalities

if TYPE_CHECKING:
    from stepvoice.assistant.server.realtime import RealtimeConnection, SessionLike

log = logging.getLogger(__name__)

SERVER_LABEL = "stepvoice"  # the mcp_call items' server_label: tools this server runs itself


@dataclass
class ResponseRequest:
    """`response.create`'s `response` object, checked."""

    modalities: list[str] | None = None
    instructions: str | None = None
    out_of_band: bool = False  # conversation "none": nothing is added to the conversation
    input: list[dict] | None = None  # a context of its own instead of the conversation
    metadata: dict[str, str] | None = None
    max_output_tokens: int | None = None

    @classmethod
    def parse(cls, p: dict[str, Any], conn: "RealtimeConnection") -> "ResponseRequest":
        r = cls()
        if p.get("output_modalities") is not None:
            r.modalities = output_modalities(p["output_modalities"], "response.output_modalities", None)
        elif p.get("modalities") is not None:
            r.modalities = output_modalities(p["modalities"], "response.modalities", None)
        if p.get("instructions") is not None:
            if not isinstance(p["instructions"], str):
                raise ProtocolError("response.instructions must be a string", "invalid_value", "response.instructions")
            r.instructions = p["instructions"]
        conversation = p.get("conversation", "auto")
        if conversation not in (None, "auto", "none"):
            raise ProtocolError("response.conversation must be 'auto' or 'none'", "invalid_value", "response.conversation")
        r.out_of_band = conversation == "none" or p.get("input") is not None
        if p.get("input") is not None:
            if not isinstance(p["input"], list):
                raise ProtocolError("response.input must be a list of items", "invalid_value", "response.input")
            r.input = p["input"]
            r.history(conn)  # refuse a bad item now, not in the middle of the response
        if p.get("metadata") is not None:
            md = p["metadata"]
            if not isinstance(md, dict) or len(md) > 16 or not all(
                    isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in md.items()):
                raise ProtocolError("response.metadata: at most 16 string pairs (keys <= 64, values <= 512 chars)",
                                    "invalid_value", "response.metadata")
            r.metadata = dict(md)
        if "max_output_tokens" in p:
            r.max_output_tokens = max_output_tokens(p["max_output_tokens"], "response.max_output_tokens", None)
        return r

    def history(self, conn: "RealtimeConnection") -> list[Message]:
        """`input` as history turns: messages, references to conversation items, function outputs."""
        out: list[Message] = []
        for i, item in enumerate(self.input or []):
            where = f"response.input[{i}]"
            itype = item.get("type") if isinstance(item, dict) else None
            if itype == "item_reference":
                entry = conn.conversation.get(item.get("id")) if isinstance(item.get("id"), str) else None
                if entry is None:
                    raise ProtocolError(f"{where}: no item {item.get('id')!r} in this conversation", "item_not_found",
                                        f"{where}.id")
                out += entry.messages
            elif itype == "message":
                try:
                    out.append(message_from_item(item, conn.limits))
                except ItemError as e:
                    raise ProtocolError(f"{where}: {e}", "invalid_value", where + e.param[4:]) from None
            elif itype == "function_call_output" and isinstance(item.get("output"), str):
                out.append(Message("input", [Text(item["output"])]))
            elif itype == "function_call":
                continue  # the call is implied by its output
            else:
                raise ProtocolError(f"{where}.type must be message, item_reference or function_call_output",
                                    "invalid_value", f"{where}.type")
        return out


class ResponseRun:
    """One response: session events in, Realtime events out."""

    def __init__(self, conn: "RealtimeConnection", request: ResponseRequest, session: "SessionLike",
                 speculation: Any = None):
        self.conn = conn
        self.request = request
        self.session = session
        self.speculation = speculation  # a committed speculative reply (#12): its events, not a new respond
        self.id = new_id("resp")
        self.modalities = request.modalities or list(conn.settings.output_modalities)
        self.client_tools = set(conn.settings.client_tool_names)
        self.in_conversation = not request.out_of_band
        self.output: list[OutputItem] = []
        self.current: OutputItem | None = None
        self.calls: dict[str, OutputItem] = {}  # server tool calls by call id, waiting for their result
        self.end: TurnEnd | None = None
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.cached_tokens = 0
        self.cancel = asyncio.Event()
        self.cancel_reason = "client_cancelled"
        self.muted = False

    @property
    def audio(self) -> bool:
        return "audio" in self.modalities

    def mute(self) -> None:
        """Barge-in or truncate: nothing more of this response is played (sent)."""
        self.muted = True

    def _resp(self, status: str, details: dict | None = None) -> dict:
        r = {"id": self.id, "object": "realtime.response", "status": status, "output_modalities": self.modalities,
             **({"conversation_id": "conv_default"} if self.in_conversation else {}),  # out of band: none
             "output": [o.item() for o in self.output], "metadata": self.request.metadata,
             "audio": {"output": {"format": {"type": "audio/pcm", "rate": PCM_RATE},
                                  "voice": self.conn.settings.voice_name or self.conn.settings.voice or "default"}}}
        if details:
            r["status_details"] = details
        if status != "in_progress":
            r["usage"] = {**self.usage, "total_tokens": self.usage["input_tokens"] + self.usage["output_tokens"],
                          # as OpenAI reports prompt caching: input tokens served from the kept KV cache (#12)
                          "input_token_details": {"cached_tokens": self.cached_tokens}}
        return r

    def _ids(self, item: OutputItem) -> dict:
        return {"response_id": self.id, "item_id": item.id, "output_index": self.output.index(item)}

    async def run(self) -> None:
        send = self.conn.send
        await send(server_event("response.created", response=self._resp("in_progress")))
        before = {id(m) for m in self.session.history}
        if self.speculation is not None:  # its reply may already be in history: only what came before counts
            before = {id(m) for m in self.speculation.history_before} | {id(self.speculation.user_message)}
        failure: str | None = None
        factory = self.conn.factory
        overrides = getattr(factory, "overrides", None)
        scope = overrides(self.session, instructions=self.request.instructions,
                          max_output_tokens=self.request.max_output_tokens) if overrides else nullcontext()
        try:
            with scope:
                events = (self.speculation.commit(self.cancel) if self.speculation is not None else
                          self.session.respond(None, reply="speech" if self.audio else "text", cancel=self.cancel))
                async for ev in events:
                    await self._event(ev)
        except asyncio.CancelledError:
            self.end = TurnEnd("cancelled")
        except Exception as e:  # the session failed: tell the client, keep the connection
            log.exception("response %s failed", self.id)
            failure = f"{type(e).__name__}: {e}"
        await self._close_current()
        for item in list(self.calls.values()):  # a server call left without a result (cancelled)
            await self._finish_call(item, "cancelled before it finished", ok=False)
        if self.in_conversation:
            self._link_history(before)
        if failure:
            status, details = "failed", {"type": "failed", "error": {"type": "server_error", "message": failure}}
        elif self.cancel.is_set() or (self.end is not None and self.end.reason == "cancelled"):
            status, details = "cancelled", {"type": "cancelled", "reason": self.cancel_reason}
        elif self.end is None or self.end.reason == "stop":
            status, details = "completed", None
        elif self.end.reason == "length":
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        else:
            status = "failed"
            details = {"type": "failed", "error": {"type": "server_error", "code": self.end.reason,
                                                   "message": self.end.error or self.end.reason}}
        await send(server_event("response.done", response=self._resp(status, details)))

    def _link_history(self, before: set[int]) -> None:
        """Which history turns this response's items became (for conversation.item.delete)."""
        new = [m for m in self.session.history if id(m) not in before]
        messages = [o for o in self.output if o.kind in ("text", "audio")]
        replies = [m for m in new if m.role == "assistant"]
        for item, msg in zip(messages, replies):
            self._entry(item).messages = [msg]
        if messages and len(replies) > len(messages):
            self._entry(messages[-1]).messages += replies[len(messages):]
        mcp = [o for o in self.output if o.kind == "mcp_call"]
        inputs = [m for m in new if m.role == "input"]
        for item, msg in zip(mcp, inputs):
            self._entry(item).messages = [msg]

    def _entry(self, item: OutputItem):
        return self.conn.conversation.get(item.id) or _Detached()

    async def _add_item(self, item: OutputItem) -> None:
        """A new output item: in the response, and (in the conversation) after the latest item."""
        self.output.append(item)
        send = self.conn.send
        await send(server_event("response.output_item.added", response_id=self.id, output_index=len(self.output) - 1,
                                item=item.item()))
        if self.in_conversation:
            _, prev = self.conn.conversation.add(item.item())
            await send(server_event("conversation.item.added", item=item.item(), previous_item_id=prev))

    async def _item_done(self, item: OutputItem) -> None:
        send = self.conn.send
        await send(server_event("response.output_item.done", response_id=self.id,
                                output_index=self.output.index(item), item=item.item()))
        if self.in_conversation:
            entry = self.conn.conversation.get(item.id)
            if entry is not None:
                entry.item = item.item()
                entry.audio_ms = item.audio_ms
                await send(server_event("conversation.item.done", item=entry.item,
                                        previous_item_id=self.conn.conversation.previous_of(item.id)))

    async def _open(self, kind: str) -> OutputItem:
        if self.current is not None and self.current.kind == kind:
            return self.current
        await self._close_current()
        item = OutputItem(new_id("item"), kind)
        self.current = item
        await self._add_item(item)
        await self.conn.send(server_event("response.content_part.added", content_index=0, part=item.part(),
                                          **self._ids(item)))
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
        item.status = "incomplete" if self.cancel.is_set() else "completed"
        await send(server_event("response.content_part.done", part=item.part(final=True), **ids))
        await self._item_done(item)

    async def _event(self, ev) -> None:
        send = self.conn.send
        if isinstance(ev, TextDelta):
            if ev.channel == "think" or not ev.text or self.muted:
                return  # reasoning stays on the server; nothing more after a barge-in
            spoken = ev.channel == "speech" and self.audio
            item = await self._open("audio" if spoken else "text")
            item.text += ev.text
            etype = "response.output_audio_transcript.delta" if spoken else "response.output_text.delta"
            await send(server_event(etype, content_index=0, delta=ev.text, **self._ids(item)))
        elif isinstance(ev, AudioChunk):
            if not self.audio or self.muted:
                return  # text-only responses never carry audio, whatever the backend made
            item = await self._open("audio")
            pcm = ev.pcm if ev.sample_rate == PCM_RATE else resample(ev.pcm, ev.sample_rate, PCM_RATE)
            if len(pcm):
                item.audio_ms += 1000.0 * len(pcm) / PCM_RATE
                await send(server_event("response.output_audio.delta", content_index=0, delta=encode_pcm16(pcm),
                                        **self._ids(item)))
        elif isinstance(ev, ToolCall):
            await self._close_current()
            if ev.name in self.client_tools:
                await self._client_call(ev)
            else:
                await self._server_call(ev)
        elif isinstance(ev, ToolResult):
            item = self.calls.get(ev.call_id)
            if item is not None:  # results of client calls come from the client, not from here
                await self._finish_call(item, ev.content, ok=ev.ok)
        elif isinstance(ev, VoiceChanged):
            self.conn.settings.voice = ev.name
            self.conn.settings.voice_name = ev.name
            await send(server_event("session.updated", session=self.conn.settings.wire(self.conn.factory.model_name)))
        elif isinstance(ev, TurnEnd):
            self.end = ev
            self.usage["input_tokens"] += ev.usage.prompt_tokens
            self.usage["output_tokens"] += ev.usage.completion_tokens
            self.cached_tokens += getattr(ev.usage, "cached_tokens", 0)
        # SpeechCodes and the voice loop's events carry nothing a Realtime client reads

    async def _client_call(self, ev: ToolCall) -> None:
        send = self.conn.send
        args = json.dumps(ev.arguments, ensure_ascii=False)
        item = OutputItem(new_id("item"), "function_call", call_id=ev.id, name=ev.name)
        await self._add_item(item)
        idx = self.output.index(item)
        await send(server_event("response.function_call_arguments.delta", response_id=self.id, item_id=item.id,
                                output_index=idx, call_id=ev.id, delta=args))
        item.arguments, item.status = args, "completed"
        await send(server_event("response.function_call_arguments.done", response_id=self.id, item_id=item.id,
                                output_index=idx, call_id=ev.id, name=ev.name, arguments=args))
        await self._item_done(item)

    async def _server_call(self, ev: ToolCall) -> None:
        send = self.conn.send
        args = json.dumps(ev.arguments, ensure_ascii=False)
        item = OutputItem(new_id("item"), "mcp_call", call_id=ev.id, name=ev.name, arguments=args,
                          server_label=SERVER_LABEL)
        await self._add_item(item)
        idx = self.output.index(item)
        await send(server_event("response.mcp_call_arguments.delta", response_id=self.id, item_id=item.id,
                                output_index=idx, delta=args))
        await send(server_event("response.mcp_call_arguments.done", response_id=self.id, item_id=item.id,
                                output_index=idx, arguments=args))
        await send(server_event("response.mcp_call.in_progress", item_id=item.id, output_index=idx))
        self.calls[ev.id] = item

    async def _finish_call(self, item: OutputItem, output: str, ok: bool) -> None:
        self.calls.pop(item.call_id, None)
        item.status = "completed"
        if ok:
            item.output = output
        else:
            item.error = {"type": "tool_execution_error", "message": output}
        etype = "response.mcp_call.completed" if ok else "response.mcp_call.failed"
        await self.conn.send(server_event(etype, item_id=item.id, output_index=self.output.index(item)))
        await self._item_done(item)


class _Detached:
    """Stands for an item no longer in the conversation (deleted while its response ran)."""

    def __init__(self) -> None:
        self.messages: list = []
