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
from stepvoice.assistant.server.item_events import ConversationItemEvents
from stepvoice.assistant.server.protocol import (
    MODEL_RATE, PCM_RATE, ProtocolError, decode_pcm16, error_event, new_id,
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


class RealtimeConnection(ConversationItemEvents):
    """Realtime protocol state of one WebSocket client (conversation.item.* handlers: item_events.py)."""

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
