"""One Realtime connection: its settings, input audio buffer, server VAD, its own
assistant `Session`, and the response in flight. All state of the connection
lives in one `RealtimeConnection`; the transport (app.py) feeds it text
frames and hands it a `send` coroutine.

Mapping to the assistant:
- committed audio / user message items collect as the next user turn; a
  `response.create` (or the server VAD's end of speech) passes them to
  `Session.respond(...)` as one `human` message;
- engine/session events become response events: text -> `output_text.delta`,
  spoken text -> `output_audio_transcript.delta`, `AudioChunk` ->
  `output_audio.delta` (PCM16 24 kHz), `ToolCall` -> a `function_call` item
  with `function_call_arguments.delta/done`, `ToolResult` (a tool the server
  ran itself) -> a `function_call_output` item, `VoiceChanged` ->
  `session.updated`;
- a client-side tool's call ends the response; the client answers with a
  `function_call_output` item and a new `response.create`;
- `conversation.item.truncate` keeps only what the user heard
  (`Session.truncate_last_reply`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.messages import Audio, Message, Text
from stepvoice.assistant.server.protocol import (
    MODEL_RATE, PCM_RATE, OutputItem, ProtocolError, decode_pcm16, error_event, function_output_item, new_id, optional,
    parse_client_event, require, resample, server_event, user_item,
)
from stepvoice.assistant.server.response import ResponseRun
from stepvoice.assistant.server.settings import Limits, SessionSettings, TurnDetection, client_tools, turn_detection

__all__ = ["RealtimeConnection", "SessionLike", "SessionFactory", "Limits", "SessionSettings", "TurnDetection"]

log = logging.getLogger(__name__)


class SessionLike(Protocol):
    """The part of `assistant.session.Session` a connection uses."""

    history: list[Message]

    def respond(self, user_input: Any, *, reply: str | None = None, cancel: asyncio.Event | None = None): ...

    def truncate_last_reply(self, played_s: float) -> None: ...

    def add_tool_output(self, call_id: str, output: str) -> None: ...


class SessionFactory(Protocol):
    """Builds the assistant session of one connection (again after `session.update`, keeping the history)."""

    model_name: str

    def build(self, settings: SessionSettings, previous: SessionLike | None) -> SessionLike:
        """A session for `settings`; `previous` (after a session.update) hands over its history and backend."""
        ...

    def voices(self) -> list[str]: ...


Send = Callable[[dict], Awaitable[None]]


class RealtimeConnection:
    """Realtime protocol state of one WebSocket client."""

    def __init__(self, factory: SessionFactory, send: Send, *, limits: Limits | None = None,
                 vad_factory: Callable[[TurnDetection], Any] | None = None):
        self.factory = factory
        self._send = send
        self.limits = limits or Limits()
        self.vad_factory = vad_factory
        self.settings = SessionSettings()
        self.configured = False  # audio is refused until the client has sent session.update
        self.session: SessionLike | None = None
        self._audio: list[np.ndarray] = []  # uncommitted input, 24 kHz
        self._audio_samples = 0
        self._audio_ms_total = 0.0  # input stream clock for VAD times
        self._pending: list[Text | Audio] = []  # committed user parts not yet answered
        self._last_user_item: str | None = None
        self._items: dict[str, str] = {}  # item id -> type, for truncate and errors
        self._last_reply_item: OutputItem | None = None
        self._response: asyncio.Task | None = None
        self._response_run: ResponseRun | None = None
        self._cancel: asyncio.Event | None = None
        self._cancel_reason = "client_cancelled"
        self._vad = None
        self._resampler = None
        self._speech_item: str | None = None

    # ---- plumbing ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.send(server_event("session.created", session=self.settings.wire(self.factory.model_name)))

    async def send(self, event: dict) -> None:
        await self._send(event)

    async def handle(self, raw: str | bytes) -> None:
        """One client frame. Never raises for bad input: the client gets an `error` event."""
        try:
            event = parse_client_event(raw)
            handler = getattr(self, "_on_" + event["type"].replace(".", "_"))
            await handler(event)
        except ProtocolError as e:
            await self.send(error_event(e))
        except StepvoiceError as e:  # e.g. a voice the session cannot load: the client hears why
            await self.send(error_event(ProtocolError(str(e), "invalid_value")))
        except Exception as e:  # a bug must not take the connection down with it
            log.exception("failed to handle a client event")
            await self.send(error_event(ProtocolError(f"server error: {type(e).__name__}: {e}", "server_error")))

    async def close(self) -> None:
        task = self._response
        if task and not task.done():
            self._cancel.set()
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    def _ensure_session(self) -> SessionLike:
        if self.session is None:
            self.session = self.factory.build(self.settings, None)
        return self.session

    @property
    def responding(self) -> bool:
        return self._response is not None and not self._response.done()

    # ---- session ----------------------------------------------------------------------

    async def _on_session_update(self, event: dict) -> None:
        s = require(event, "session", dict)
        eid = event.get("event_id")
        new = SessionSettings(**{k: getattr(self.settings, k) for k in SessionSettings.__dataclass_fields__})
        if "instructions" in s:
            new.instructions = optional(s, "instructions", str, "session.instructions")
        if "output_modalities" in s:
            mods = require(s, "output_modalities", list, "session.output_modalities")
            if not mods or any(m not in ("text", "audio") for m in mods):
                raise ProtocolError("session.output_modalities must be ['text'] or ['audio']", "invalid_value",
                                    "session.output_modalities", eid)
            new.output_modalities = list(mods)
        if "max_output_tokens" in s:
            m = s["max_output_tokens"]
            if not (m is None or m == "inf" or (isinstance(m, int) and not isinstance(m, bool) and m >= 1)):
                raise ProtocolError("session.max_output_tokens must be a positive integer or 'inf'", "invalid_value",
                                    "session.max_output_tokens", eid)
            new.max_output_tokens = None if m in (None, "inf") else m
        if "tools" in s:
            new.tools = client_tools(require(s, "tools", list, "session.tools"), self.limits.max_tools, eid)
        audio = optional(s, "audio", dict, "session.audio") or {}
        inp = optional(audio, "input", dict, "session.audio.input") or {}
        out = optional(audio, "output", dict, "session.audio.output") or {}
        for where, fmt in (("input", inp.get("format")), ("output", out.get("format"))):
            if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type", "audio/pcm") == "audio/pcm"
                                        and fmt.get("rate", PCM_RATE) == PCM_RATE):
                raise ProtocolError(f"session.audio.{where}.format: only audio/pcm at {PCM_RATE} Hz is supported",
                                    "unsupported_format", f"session.audio.{where}.format", eid)
        if "turn_detection" in inp:
            new.turn_detection = turn_detection(inp["turn_detection"], eid)
        if "voice" in out:
            voice = out["voice"]
            voice = voice.get("id") if isinstance(voice, dict) else voice
            if not isinstance(voice, str) or not voice:
                raise ProtocolError("session.audio.output.voice must be a voice name", "invalid_value",
                                    "session.audio.output.voice", eid)
            known = self.factory.voices()
            if known and voice not in known:
                raise ProtocolError(f"unknown voice {voice!r}; available: {', '.join(known)}", "invalid_value",
                                    "session.audio.output.voice", eid)
            new.voice = voice
        rebuild = (new.instructions, new.tools) != (self.settings.instructions, self.settings.tools)
        voice_changed = new.voice != self.settings.voice
        td_changed = new.turn_detection != self.settings.turn_detection
        self.settings = new
        self.configured = True
        if self.session is not None and (rebuild or voice_changed):
            if self.responding:
                await self._cancel_response("client_cancelled")
            if rebuild or not hasattr(self.session, "set_voice"):
                self.session = self.factory.build(new, self.session)
            else:
                self.session.set_voice(new.voice)
        if td_changed:
            self._vad = self._resampler = None
        await self.send(server_event("session.updated", session=new.wire(self.factory.model_name)))

    # ---- input audio ------------------------------------------------------------------

    async def _on_input_audio_buffer_append(self, event: dict) -> None:
        audio = require(event, "audio", str)
        if not self.configured:
            raise ProtocolError("send session.update before input audio (to choose the format and turn detection)",
                                "session_not_configured", "audio", event.get("event_id"))
        try:
            samples = decode_pcm16(audio, self.limits.max_append_bytes)
        except ProtocolError as e:
            e.event_id = event.get("event_id")
            raise
        if (self._audio_samples + len(samples)) / PCM_RATE > self.limits.max_buffer_s:
            raise ProtocolError(f"input audio buffer full ({self.limits.max_buffer_s:g} s): commit or clear it",
                                "audio_too_large", "audio", event.get("event_id"))
        self._audio.append(samples)
        self._audio_samples += len(samples)
        if self.settings.turn_detection is not None:
            await self._detect(samples)

    async def _on_input_audio_buffer_commit(self, event: dict) -> None:
        if self._audio_samples < PCM_RATE // 10:  # less than 100 ms is not a turn
            raise ProtocolError("input audio buffer has less than 100 ms of audio", "input_audio_buffer_commit_empty",
                                None, event.get("event_id"))
        pcm = np.concatenate(self._audio)
        self._clear_audio()
        await self._commit(resample(pcm, PCM_RATE, MODEL_RATE))

    async def _on_input_audio_buffer_clear(self, event: dict) -> None:
        self._clear_audio()
        if self._vad is not None:
            self._vad.reset()
        await self.send(server_event("input_audio_buffer.cleared"))

    def _clear_audio(self) -> None:
        self._audio.clear()
        self._audio_samples = 0

    async def _commit(self, samples16k: np.ndarray, item_id: str | None = None) -> None:
        item_id = item_id or new_id("item")
        self._pending.append(Audio(samples16k.astype(np.float32)))
        prev, self._last_user_item = self._last_user_item, item_id
        self._items[item_id] = "user"
        await self.send(server_event("input_audio_buffer.committed", item_id=item_id, previous_item_id=prev))
        item = user_item(item_id, None, has_audio=True)
        await self.send(server_event("conversation.item.added", item=item, previous_item_id=prev))
        await self.send(server_event("conversation.item.done", item=item, previous_item_id=prev))

    async def _detect(self, samples24k: np.ndarray) -> None:
        """Server VAD: speech start (barge-in) and end (commit + respond)."""
        if self._vad is None:
            if self.vad_factory is None:
                return
            import soxr

            self._vad = self.vad_factory(self.settings.turn_detection)
            self._resampler = soxr.ResampleStream(PCM_RATE, MODEL_RATE, 1, dtype="float32")
        td = self.settings.turn_detection
        for ev in self._vad.push(self._resampler.resample_chunk(samples24k)):
            kind = type(ev).__name__
            if kind == "SpeechStart":
                self._speech_item = new_id("item")
                await self.send(server_event("input_audio_buffer.speech_started",
                                             audio_start_ms=int(ev.t * 1000), item_id=self._speech_item))
                if td.interrupt_response and self.responding:
                    await self._cancel_response("turn_detected")
            elif kind == "SpeechEnd":
                item_id = self._speech_item or new_id("item")
                self._speech_item = None
                await self.send(server_event("input_audio_buffer.speech_stopped",
                                             audio_end_ms=int(ev.end_t * 1000), item_id=item_id))
                self._clear_audio()
                await self._commit(ev.samples, item_id)
                if td.create_response and not self.responding:
                    await self._start_response({})
            elif kind == "SpeechDropped":
                self._speech_item = None

    # ---- conversation -----------------------------------------------------------------

    async def _on_conversation_item_create(self, event: dict) -> None:
        item = require(event, "item", dict)
        eid = event.get("event_id")
        itype = item.get("type")
        if itype == "function_call_output":
            call_id = require(item, "call_id", str, "item.call_id")
            output = require(item, "output", str, "item.output")
            if self.responding:
                raise ProtocolError("wait for the response to finish before sending function_call_output",
                                    "conversation_already_has_active_response", "item", eid)
            try:
                self._ensure_session().add_tool_output(call_id, output)
            except Exception as e:  # an unknown call id, a call that was not a client tool
                raise ProtocolError(f"cannot add the output of call {call_id!r}: {e}", "invalid_value", "item.call_id", eid) from None
            item_id = item.get("id") if isinstance(item.get("id"), str) else new_id("item")
            self._items[item_id] = "function_call_output"
            done = function_output_item(item_id, call_id, output)
            await self.send(server_event("conversation.item.added", item=done, previous_item_id=None))
            await self.send(server_event("conversation.item.done", item=done, previous_item_id=None))
            return
        if itype != "message" or item.get("role") != "user":
            raise ProtocolError("only user messages and function_call_output items can be created",
                                "unsupported_item", "item.type", eid)
        content = require(item, "content", list, "item.content")
        texts: list[str] = []
        audio: list[np.ndarray] = []
        for i, part in enumerate(content):
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype in ("input_text", "text"):
                texts.append(require(part, "text", str, f"item.content[{i}].text"))
            elif ptype == "input_audio":
                if not self.configured:
                    raise ProtocolError("send session.update before input audio", "session_not_configured",
                                        f"item.content[{i}]", eid)
                pcm = decode_pcm16(require(part, "audio", str, f"item.content[{i}].audio"), self.limits.max_append_bytes)
                audio.append(resample(pcm, PCM_RATE, MODEL_RATE))
            else:
                raise ProtocolError(f"item.content[{i}]: type must be input_text or input_audio", "invalid_value",
                                    f"item.content[{i}].type", eid)
        text = "".join(texts)
        if len(text) > self.limits.max_text_chars:
            raise ProtocolError(f"text too long: at most {self.limits.max_text_chars} characters", "invalid_value",
                                "item.content", eid)
        if not text and not audio:
            raise ProtocolError("the message has no content", "invalid_value", "item.content", eid)
        self._pending += [Audio(a) for a in audio] + ([Text(text)] if text else [])
        item_id = item.get("id") if isinstance(item.get("id"), str) else new_id("item")
        prev, self._last_user_item = self._last_user_item, item_id
        self._items[item_id] = "user"
        done = user_item(item_id, text, has_audio=bool(audio))
        await self.send(server_event("conversation.item.added", item=done, previous_item_id=prev))
        await self.send(server_event("conversation.item.done", item=done, previous_item_id=prev))

    async def _on_conversation_item_truncate(self, event: dict) -> None:
        eid = event.get("event_id")
        item_id = require(event, "item_id", str)
        content_index = require(event, "content_index", int)
        audio_end_ms = require(event, "audio_end_ms", int)
        if item_id not in self._items:
            raise ProtocolError(f"no item {item_id!r} in this conversation", "item_not_found", "item_id", eid)
        if self.responding and self._response_run is not None and self._response_run.current is not None \
                and self._response_run.current.id == item_id:
            await self._cancel_response("client_cancelled")  # the client stopped playing the reply in progress
        last = self._last_reply_item
        if last is None or last.id != item_id:
            raise ProtocolError("only the latest assistant reply can be truncated", "invalid_value", "item_id", eid)
        if audio_end_ms < 0:
            raise ProtocolError("audio_end_ms must be >= 0", "invalid_value", "audio_end_ms", eid)
        played = min(audio_end_ms, int(last.audio_ms)) if last.kind == "audio" else audio_end_ms
        self._ensure_session().truncate_last_reply(played / 1000.0)
        await self.send(server_event("conversation.item.truncated", item_id=item_id, content_index=content_index,
                                     audio_end_ms=played))

    async def _on_conversation_item_delete(self, event: dict) -> None:
        raise ProtocolError("conversation.item.delete is not supported by stepvoice", "unsupported_event", "type",
                            event.get("event_id"))

    async def _on_conversation_item_retrieve(self, event: dict) -> None:
        raise ProtocolError("conversation.item.retrieve is not supported by stepvoice", "unsupported_event", "type",
                            event.get("event_id"))

    async def _on_output_audio_buffer_clear(self, event: dict) -> None:
        raise ProtocolError("output_audio_buffer.clear is WebRTC-only; use response.cancel", "unsupported_event", "type",
                            event.get("event_id"))

    # ---- responses --------------------------------------------------------------------

    async def _on_response_create(self, event: dict) -> None:
        params = optional(event, "response", dict, "response") or {}
        if self.responding:
            raise ProtocolError("a response is already in progress: cancel it first",
                                "conversation_already_has_active_response", None, event.get("event_id"))
        mods = params.get("output_modalities")
        if mods is not None and (not isinstance(mods, list) or not mods or any(m not in ("text", "audio") for m in mods)):
            raise ProtocolError("response.output_modalities must be ['text'] or ['audio']", "invalid_value",
                                "response.output_modalities", event.get("event_id"))
        await self._start_response(params)

    async def _on_response_cancel(self, event: dict) -> None:
        if not self.responding:
            raise ProtocolError("no response is in progress", "response_cancel_not_active", None, event.get("event_id"))
        await self._cancel_response("client_cancelled")

    async def _cancel_response(self, reason: str) -> None:
        self._cancel_reason = reason
        self._cancel.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._response), timeout=10)
        except asyncio.TimeoutError:
            self._response.cancel()

    async def _start_response(self, params: dict) -> None:
        session = self._ensure_session()
        mods = params.get("output_modalities") or self.settings.output_modalities
        reply = "speech" if "audio" in mods else "text"
        parts, self._pending = self._pending, []
        user_input = Message("human", list(parts)) if parts else None
        self._cancel = asyncio.Event()
        self._cancel_reason = "client_cancelled"
        run = self._response_run = ResponseRun(self, new_id("resp"), list(mods))
        self._response = asyncio.create_task(run.run(session, user_input, reply, self._cancel))
        await asyncio.sleep(0)  # let response.created go out before the next client event is handled
