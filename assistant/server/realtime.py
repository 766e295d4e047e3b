"""One Realtime connection: its settings, input audio buffer, server VAD, its own
assistant `Session`, its conversation items and the response in flight. All
state of the connection lives in one `RealtimeConnection`; the transport
(app.py) feeds it text frames and hands it a `send` coroutine.

Mapping to the assistant (see the README's Serving section for the client view):
- every user, assistant or system item becomes a turn of the session's history
  when it is created (not when a response starts), so `response.create`
  always means "answer from the conversation as it is": a greeting on an empty
  one, a re-prompt, a continuation after function outputs;
- history changes that arrive while a response runs (a function output, a new
  item, a `session.update`) are applied when that response ends: the running
  response is never cancelled or reordered by them;
- a client-side tool's call ends the response as a `function_call` item; a
  tool the server runs itself is an `mcp_call` item (server_label
  "stepvoice") with its output, as OpenAI reports its own server-side tools,
  so a client that answers every `function_call` never sees it;
- `conversation.item.truncate` keeps only what the user heard
  (`Session.truncate_last_reply`); after `speech_started` (barge-in) or a
  truncate of the item playing, no more audio of that response is sent.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.messages import Audio, Message
from stepvoice.assistant.server.conversation import Conversation
from stepvoice.assistant.server.items import ItemError, message_from_item, wire_message
from stepvoice.assistant.server.protocol import (
    MODEL_RATE, PCM_RATE, ProtocolError, decode_pcm16, error_event, function_output_item, new_id,
    parse_client_event, require, resample, server_event, user_item,
)
from stepvoice.assistant.server.limits import ConnectionGuard, ServerLimits
from stepvoice.assistant.server.response import ResponseRequest, ResponseRun
from stepvoice.assistant.server.settings import Limits, SessionSettings, TurnDetection, apply_update
from stepvoice.assistant.server.transcription import InputTranscriber

__all__ = ["RealtimeConnection", "SessionLike", "SessionFactory", "Limits", "SessionSettings", "TurnDetection"]

log = logging.getLogger(__name__)


class SessionLike(Protocol):
    """The part of `assistant.session.Session` a connection uses."""

    history: list[Message]
    backend: Any

    def respond(self, user_input: Any, *, reply: str | None = None, cancel: asyncio.Event | None = None): ...

    def truncate_last_reply(self, played_s: float) -> Any: ...

    def add_tool_output(self, call_id: str, output: str) -> Any: ...


class SessionFactory(Protocol):
    """Builds and reconfigures the assistant session of one connection (see sessions.AssistantSessions)."""

    model_name: str

    def build(self, settings: SessionSettings, previous: SessionLike | None) -> SessionLike:
        """A session for `settings`; `previous` hands over history, pending client calls and backend."""
        ...

    def fork(self, session: SessionLike, settings: SessionSettings, history: list[Message]) -> SessionLike:
        """A throw-away session on the same backend with its own history (out-of-band responses)."""
        ...

    def transcriber(self, session: SessionLike) -> Callable[[Audio], Awaitable[str]]: ...

    def resolve_voice(self, name: str) -> str | None: ...

    def voices(self) -> list[str]: ...


Send = Callable[[dict], Awaitable[None]]


class RealtimeConnection:
    """Realtime protocol state of one WebSocket client."""

    def __init__(self, factory: SessionFactory, send: Send, *, limits: Limits | None = None,
                 vad_factory: Callable[[TurnDetection], Any] | None = None, server_limits: ServerLimits | None = None):
        self.factory = factory
        self._send = send
        self.limits = limits or Limits()
        self.guard = ConnectionGuard(self, server_limits)  # limits.py: sizes, coalescing, tool approvals
        self.vad_factory = vad_factory
        self.settings = SessionSettings()  # OpenAI's defaults: server VAD, audio out, default voice
        self.session: SessionLike | None = None
        self._stale = False  # settings changed: rebuild the session before the next response
        self.conversation = Conversation()
        self._audio: list[np.ndarray] = []  # uncommitted input, 24 kHz
        self._audio_samples = 0
        self._response: asyncio.Task | None = None
        self.run: ResponseRun | None = None  # the latest response (running or done)
        self._deferred: list[Callable[[], None]] = []  # history changes waiting for the response to end
        self._answered: set[str] = set()  # client calls whose output is among those changes
        self._vad = None
        self._resampler = None
        self._speech_item: str | None = None
        self._speculation: tuple[Any, Any] | None = None  # (SpeechPause, Speculation) of the speech in progress
        self._discards: set[asyncio.Task] = set()
        self.transcriber = InputTranscriber(self)

    # ---- plumbing ----------------------------------------------------------------------

    async def start(self) -> None:
        self.guard.install()
        await self.send(server_event("session.created", session=self.settings.wire(self.factory.model_name)))

    async def send(self, event: dict) -> None:
        await self._send(event)
        # A response's burst of events (its end sends half a dozen) must not hold the loop in one step:
        # other connections, their VADs and pings get a turn between events.
        await asyncio.sleep(0)

    async def handle(self, raw: str | bytes) -> None:
        """One client frame. Never raises for bad input: the client gets an `error` event."""
        event_id = None
        try:
            event = parse_client_event(raw)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            event = await self.guard.screen(event)  # limits before any work (limits.py)
            if event is None:
                return
            handler = getattr(self, "_on_" + event["type"].replace(".", "_"))
            await handler(event)
        except ProtocolError as e:
            e.event_id = e.event_id or event_id
            await self.send(error_event(e))
        except StepvoiceError as e:  # e.g. a voice the session cannot load: the client hears why
            await self.send(error_event(ProtocolError(str(e), "invalid_value", None, event_id)))
        except Exception as e:  # a bug must not take the connection down with it
            log.exception("failed to handle a client event")
            await self.send(error_event(ProtocolError(f"server error: {type(e).__name__}: {e}", "server_error",
                                                      None, event_id)))

    async def close(self) -> None:
        self.guard.close()
        await self.transcriber.close()
        task = self._response
        if task and not task.done():
            self.run.cancel.set()
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    @property
    def responding(self) -> bool:
        return self._response is not None and not self._response.done()

    def _session(self) -> SessionLike:
        """The session for the next response (built on first use, rebuilt after a settings change)."""
        if self.session is None or self._stale:
            self.session = self.factory.build(self.settings, self.session)
            self._stale = False
        return self.session

    def _later(self, change: Callable[[], None]) -> None:
        """Apply a history change now, or when the running response ends (it must not reorder it)."""
        if self.responding:
            self._deferred.append(change)
        else:
            change()

    def _apply_deferred(self) -> None:
        changes, self._deferred = self._deferred, []
        for change in changes:
            try:
                change()
            except Exception:  # one bad change must not lose the others
                log.exception("a deferred conversation change failed")

    # ---- session ----------------------------------------------------------------------

    async def _on_session_update(self, event: dict) -> None:
        s = require(event, "session", dict)
        eid = event.get("event_id")
        new, errors = apply_update(self.settings, s, limits=self.limits, resolve_voice=self.factory.resolve_voice,
                                   voices=self.factory.voices, eid=eid)
        for err in errors:  # one error per refused field; the rest of the update applies (as OpenAI)
            await self.send(error_event(err))
        old, self.settings = self.settings, new
        if (new.instructions, new.tools, new.max_output_tokens, new.voice) != \
                (old.instructions, old.tools, old.max_output_tokens, old.voice):
            self._stale = True  # applied to the next response; the running one goes on as it was
            if self.session is not None and not self.responding and new.voice != old.voice:
                self._session()  # start preparing the new voice now
        if new.turn_detection != old.turn_detection:
            self._vad = self._resampler = None
        await self.send(server_event("session.updated", session=new.wire(self.factory.model_name)))

    # ---- input audio ------------------------------------------------------------------

    async def _on_input_audio_buffer_append(self, event: dict) -> None:
        audio = require(event, "audio", str)
        samples = decode_pcm16(audio, self.limits.max_append_bytes)
        if (self._audio_samples + len(samples)) / PCM_RATE > self.limits.max_buffer_s:
            raise ProtocolError(f"input audio buffer full ({self.limits.max_buffer_s:g} s): commit or clear it",
                                "audio_too_large", "audio")
        self._audio.append(samples)
        self._audio_samples += len(samples)
        if self.settings.turn_detection is not None:
            await self._detect(samples)

    async def _on_input_audio_buffer_commit(self, event: dict) -> None:
        if self._audio_samples < PCM_RATE // 10:  # less than 100 ms is not a turn
            raise ProtocolError("input audio buffer has less than 100 ms of audio", "input_audio_buffer_commit_empty")
        pcm = np.concatenate(self._audio)
        self._clear_audio()
        if self._vad is not None:
            self._vad.reset()
        await self._commit(resample(pcm, PCM_RATE, MODEL_RATE))

    async def _on_input_audio_buffer_clear(self, event: dict) -> None:
        self._clear_audio()
        if self._vad is not None:
            self._vad.reset()
        await self.send(server_event("input_audio_buffer.cleared"))

    def _clear_audio(self) -> None:
        self._audio.clear()
        self._audio_samples = 0

    async def _commit(self, samples16k: np.ndarray, item_id: str | None = None, message: Message | None = None) -> None:
        item_id = item_id or new_id("item")
        speculated = message is not None  # a committed speculation already put its user turn in history
        message = message or Message("human", [Audio(samples16k.astype(np.float32))])
        item = user_item(item_id, None, has_audio=True)
        entry, prev = self.conversation.add(item, [message])
        if not speculated:
            self._later(lambda: self._append_history(message))
        await self.send(server_event("input_audio_buffer.committed", item_id=item_id, previous_item_id=prev))
        await self.send(server_event("conversation.item.added", item=item, previous_item_id=prev))
        await self.send(server_event("conversation.item.done", item=item, previous_item_id=prev))
        if self.settings.transcription is not None:
            self.transcriber.submit(item_id)

    async def _detect(self, samples24k: np.ndarray) -> None:
        """Server VAD: speech start (barge-in) and end (commit + respond)."""
        if self._vad is None:
            if self.vad_factory is None:
                return
            import soxr

            # Loading the VAD model and running it are off the loop (other connections keep flowing).
            self._vad = await asyncio.to_thread(self.vad_factory, self.settings.turn_detection)
            self._speculation_pause()
            self._resampler = soxr.ResampleStream(PCM_RATE, MODEL_RATE, 1, dtype="float32")
        td = self.settings.turn_detection
        found = await asyncio.to_thread(self._vad.push, self._resampler.resample_chunk(samples24k))
        for ev in found:
            kind = type(ev).__name__
            if kind == "SpeechStart":
                self._speech_item = new_id("item")
                if td.interrupt_response and self.responding:
                    self.run.mute()  # no audio delta goes out after speech_started
                await self.send(server_event("input_audio_buffer.speech_started",
                                             audio_start_ms=int(ev.t * 1000), item_id=self._speech_item))
                if td.interrupt_response and self.responding:
                    await self._cancel_response("turn_detected")
            elif kind == "SpeechPause":
                self._speculate(ev, td)
            elif kind == "SpeechResumed":
                self._drop_speculation()
            elif kind == "SpeechEnd":
                item_id = self._speech_item or new_id("item")
                self._speech_item = None
                await self.send(server_event("input_audio_buffer.speech_stopped",
                                             audio_end_ms=int(ev.end_t * 1000), item_id=item_id))
                self._clear_audio()
                spec = await self._speculation_for(ev, td)
                await self._commit(ev.samples, item_id, spec.user_message if spec is not None else None)
                if td.create_response and not self.responding:
                    await self._start_response(ResponseRequest(), spec)
            elif kind == "SpeechDropped":
                self._speech_item = None

    # ---- conversation -----------------------------------------------------------------

    def _append_history(self, message: Message, after: Message | None = None, at_root: bool = False) -> None:
        """Add a turn to the session's history in place (the session keeps its reply alignment)."""
        history = self._session().history
        if at_root:
            history.insert(0, message)
        elif after is not None and any(m is after for m in history):
            history.insert(next(i for i, m in enumerate(history) if m is after) + 1, message)
        else:
            history.append(message)

    async def _on_conversation_item_create(self, event: dict) -> None:
        item = require(event, "item", dict)
        itype = item.get("type", "message")
        handler = getattr(self, f"_create_{itype}", None) if isinstance(itype, str) else None
        if handler is None:
            raise ProtocolError(f"item.type {itype!r} cannot be created (message or function_call_output)",
                                "invalid_value", "item.type")
        prev = event.get("previous_item_id")
        if prev is not None and prev != "root" and (not isinstance(prev, str) or prev not in self.conversation):
            raise ProtocolError(f"previous_item_id {prev!r} is not in this conversation", "item_not_found",
                                "previous_item_id")
        item_id = item.get("id") if isinstance(item.get("id"), str) and item.get("id") else new_id("item")
        if item_id in self.conversation:
            raise ProtocolError(f"an item with id {item_id!r} already exists", "invalid_value", "item.id")
        await handler(item, item_id, prev)

    async def _create_message(self, item: dict, item_id: str, prev: str | None) -> None:
        try:
            message = message_from_item(item, self.limits)
        except ItemError as e:
            raise ProtocolError(str(e), "invalid_value", e.param) from None
        wire = wire_message(item_id, item)
        at_end = prev is None or prev == self.conversation.last_id
        anchor = None if at_end or prev == "root" else self.conversation.history_anchor(prev)
        entry, previous = self.conversation.add(wire, [message], after=None if prev == "root" else prev, at_end=at_end)
        self._later(lambda: self._append_history(message, anchor, at_root=prev == "root"))
        await self.send(server_event("conversation.item.added", item=wire, previous_item_id=previous))
        await self.send(server_event("conversation.item.done", item=wire, previous_item_id=previous))

    async def _create_function_call_output(self, item: dict, item_id: str, prev: str | None) -> None:
        call_id = require(item, "call_id", str, "item.call_id")
        output = require(item, "output", str, "item.output")
        pending = self.factory.pending_calls(self.session) if self.session is not None else []
        waiting = [c for c in pending if c not in self._answered]
        if call_id not in waiting:
            raise ProtocolError(f"no pending client tool call {call_id!r} (pending: {', '.join(waiting) or 'none'})",
                                "invalid_value", "item.call_id")
        self._answered.add(call_id)  # its output may wait for the running response to end
        done = function_output_item(item_id, call_id, output)
        entry, previous = self.conversation.add(done)

        def add() -> None:
            self._answered.discard(call_id)
            session = self._session()
            session.add_tool_output(call_id, output)
            entry.messages = list(session.history[-1:])

        self._later(add)
        await self.send(server_event("conversation.item.added", item=done, previous_item_id=previous))
        await self.send(server_event("conversation.item.done", item=done, previous_item_id=previous))

    async def _on_conversation_item_retrieve(self, event: dict) -> None:
        item_id = require(event, "item_id", str)
        entry = self.conversation.get(item_id)
        if entry is None:
            raise ProtocolError(f"no item {item_id!r} in this conversation", "item_not_found", "item_id")
        await self.send(server_event("conversation.item.retrieved", item=entry.item))

    async def _on_conversation_item_delete(self, event: dict) -> None:
        item_id = require(event, "item_id", str)
        if item_id not in self.conversation:
            raise ProtocolError(f"no item {item_id!r} in this conversation", "item_not_found", "item_id")
        if self.responding and any(o.id == item_id for o in self.run.output):
            raise ProtocolError("the item belongs to the response in progress: cancel it first",
                                "conversation_already_has_active_response", "item_id")
        entry = self.conversation.remove(item_id)

        def drop() -> None:
            if entry.messages and self.session is not None:
                gone = {id(m) for m in entry.messages}
                self.session.history[:] = [m for m in self.session.history if id(m) not in gone]

        self._later(drop)
        await self.send(server_event("conversation.item.deleted", item_id=item_id))

    async def _on_conversation_item_truncate(self, event: dict) -> None:
        item_id = require(event, "item_id", str)
        content_index = require(event, "content_index", int)
        audio_end_ms = require(event, "audio_end_ms", int)
        entry = self.conversation.get(item_id)
        if entry is None:
            raise ProtocolError(f"no item {item_id!r} in this conversation", "item_not_found", "item_id")
        item = entry.item
        if item.get("type") != "message" or item.get("role") != "assistant":
            raise ProtocolError("only assistant message items can be truncated", "invalid_value", "item_id")
        content = item.get("content") or []
        playing = self.responding and self.run.current is not None and self.run.current.id == item_id
        if not playing and not (0 <= content_index < len(content) and content[content_index].get("type") == "output_audio"):
            raise ProtocolError(f"content_index {content_index} is not an audio part of item {item_id!r}",
                                "invalid_value", "content_index")
        if playing and content_index != 0:
            raise ProtocolError(f"content_index {content_index} is not an audio part of item {item_id!r}",
                                "invalid_value", "content_index")
        if audio_end_ms < 0:
            raise ProtocolError("audio_end_ms must be >= 0", "invalid_value", "audio_end_ms")
        if playing:
            self.run.mute()  # the client stopped playing it: nothing more of it is sent
            await self._cancel_response("client_cancelled")
        if audio_end_ms > round(entry.audio_ms):
            raise ProtocolError(f"audio_end_ms {audio_end_ms} is beyond the item's audio ({round(entry.audio_ms)} ms)",
                                "invalid_value", "audio_end_ms")
        heard_text = ""
        offset = self.conversation.audio_before(item_id)
        if offset is not None and self.session is not None:
            kept = self.session.truncate_last_reply((offset + audio_end_ms) / 1000.0)
            heard_text = kept.plain_text if kept is not None and audio_end_ms > 0 else ""
        item["content"] = [{"type": "output_audio", "transcript": heard_text}]
        await self.send(server_event("conversation.item.truncated", item_id=item_id, content_index=content_index,
                                     audio_end_ms=audio_end_ms))

    async def _on_output_audio_buffer_clear(self, event: dict) -> None:
        raise ProtocolError("output_audio_buffer.clear is WebRTC-only; use response.cancel", "unsupported_event", "type")

    # ---- responses --------------------------------------------------------------------

    async def _on_response_create(self, event: dict) -> None:
        params = event.get("response")
        if params is not None and not isinstance(params, dict):
            raise ProtocolError("'response' must be an object", "invalid_value", "response")
        if self.responding:
            raise ProtocolError("a response is already in progress: cancel it first",
                                "conversation_already_has_active_response")
        request = ResponseRequest.parse(params or {}, self)
        await self._start_response(request)

    async def _on_response_cancel(self, event: dict) -> None:
        if not self.responding:
            raise ProtocolError("no response is in progress", "response_cancel_not_active")
        self.run.mute()
        await self._cancel_response("client_cancelled")

    async def _cancel_response(self, reason: str) -> None:
        self.run.cancel_reason = reason
        self.run.cancel.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._response), timeout=10)
        except asyncio.TimeoutError:
            self._response.cancel()

    async def _start_response(self, request: ResponseRequest, speculation: Any = None) -> None:
        await self._settle_discards()
        self._apply_deferred()
        session = self._session()
        if request.out_of_band:
            history = request.history(self) if request.input is not None else list(session.history)
            session = self.factory.fork(session, self.settings, history)
        run = self.run = ResponseRun(self, request, session, speculation)
        self._response = asyncio.create_task(self._respond(run))
        await asyncio.sleep(0)  # let response.created go out before the next client event is handled

    # ---- speculative replies (#12, assistant.speculation) ------------------------------------

    def _speculation_pause(self) -> None:
        """Let the endpointer report short pauses when the config speculates."""
        cfg = getattr(self.factory, "config", None)
        ep = getattr(self._vad, "config", None)
        pause = getattr(cfg, "speculate_pause_ms", 200)
        if getattr(cfg, "speculate", False) and ep is not None and ep.pause_ms is None and 32 <= pause < ep.silence_ms:
            import dataclasses

            self._vad.config = dataclasses.replace(ep, pause_ms=pause)

    def _speculate(self, pause: Any, td: Any) -> None:
        """A short pause: start the reply silently if the next response would start from this speech."""
        if (not td.create_response or self.responding or self._speculation is not None or self._discards
                or self._deferred or self._stale):
            return
        session = self._session()
        if not hasattr(session, "speculate"):
            return
        reply = "speech" if "audio" in self.settings.output_modalities else "text"
        spec = session.speculate(pause.samples.astype(np.float32), reply=reply)
        self._speculation = (pause, spec)

    def _drop_speculation(self) -> None:
        if self._speculation is None:
            return
        _, spec = self._speculation
        self._speculation = None
        task = asyncio.create_task(spec.discard())
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)

    async def _speculation_for(self, end: Any, td: Any) -> Any:
        """The speculation to commit for this end of speech (it heard exactly this utterance), else None."""
        if self._speculation is None:
            return None
        pause, spec = self._speculation
        self._speculation = None
        if pause.end_t == end.end_t and not end.forced and td.create_response and not self.responding \
                and self.session is spec.session and not self._deferred and not self._stale \
                and spec.user_message is not None:
            return spec
        await spec.discard()
        return None

    async def _settle_discards(self) -> None:
        while self._discards:
            await asyncio.gather(*list(self._discards), return_exceptions=True)

    async def _respond(self, run: ResponseRun) -> None:
        try:
            await run.run()
        finally:
            self._apply_deferred()
            self.transcriber.wake()
