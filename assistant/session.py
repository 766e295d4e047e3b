"""One conversation with the model: the turn flow, and the parts it is built from.

    session = Session(backend, tools=registry, token2wav=t2w, voice_bank=bank)
    async for event in session.respond("What's the weather in Paris?", reply="speech"):
        ...  # TextDelta, SpeechCodes, AudioChunk, ToolCall, ToolResult, VoiceChanged ... TurnEnd

`respond` runs generation rounds: when the model calls tools, the session
runs them concurrently, feeds the results back in `input` turns and lets the
model continue, up to `tool_loop.max_rounds` rounds. It yields the engine's
events of every round plus `ToolResult`, `AudioChunk` and `VoiceChanged`, and
ends with exactly one `TurnEnd` (usage summed over the rounds; the engine's
per-round TurnEnds are not passed on).

Calls to tools named in `client_tools` are not run: `respond` yields the
`ToolCall` and ends; the caller answers with `add_tool_output(call_id,
output)` and continues with `respond(None)`.

No call is left without an answer in history: a turn cancelled while tools
run keeps the results that finished and records the others as cancelled.

Where each concern lives (each can be built and tested alone):
  history.History            messages, replies as the model wrote them, barge-in truncation
  request.RequestBuilder     system prompt, tool schemas, compaction, sampling options
  rag.Rag                    the per-turn retrieval context
  transcribe.Transcriber     ASR passes (RAG queries, compaction)
  voice_control.VoiceControl the voice, its synthesis stream (SpeechOut), switches by tools
  tool_loop.ToolRunner       server-side tools; client_calls.ClientCalls the client-side ones
  fallback.fallback_text     what is said when a tool failed and the model stayed silent
  parts                      the typed protocols of the constructor's parts
This file keeps the turn flow: rounds, tool results, commit and cancel.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Mapping

import numpy as np

from stepvoice.assistant.client_calls import ClientCalls
from stepvoice.assistant.compaction import CompactionStats, CompactionTotals, TokenCounter
from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.fallback import FALLBACK, fallback_text
from stepvoice.assistant.history import History, ReplyRecord
from stepvoice.assistant.inputs import user_message
from stepvoice.assistant.parts import (
    BackendLike, RetrieverLike, Token2WavLike, ToolContextLike, ToolRegistryLike, VoiceBankLike,
)
from stepvoice.assistant.presets import Preset
from stepvoice.assistant.rag import Rag
from stepvoice.assistant.request import ASSISTANT_OPENER_TOKENS, RequestBuilder
from stepvoice.assistant.speech_out import SpeechOut
from stepvoice.assistant.tool_loop import LIMIT, ToolRunner, cancelled, result
from stepvoice.assistant.transcribe import Transcriber
from stepvoice.assistant.voice_control import VoiceControl
from stepvoice.assistant.voices import SessionVoices
from stepvoice.engine.events import Event, SpeechCodes, TextDelta, ToolCall, ToolResult, TurnEnd, Usage, VoiceChanged
from stepvoice.engine.messages import Message, Text
from stepvoice.engine.options import GenerationOptions

if TYPE_CHECKING:
    from stepvoice.assistant.speculation import Speculation

log = logging.getLogger(__name__)


@dataclass
class TurnState:
    """What one `respond` call has gathered so far (summed usage, failures, the last engine TurnEnd)."""

    usage: Usage = field(default_factory=Usage)
    last_end: TurnEnd | None = None
    failed_tools: list[str] = field(default_factory=list)

    def add_usage(self, u: Usage) -> None:
        self.usage = Usage(
            self.usage.prompt_tokens + u.prompt_tokens, self.usage.completion_tokens + u.completion_tokens,
            self.usage.audio_seconds + u.audio_seconds, self.usage.elapsed_s + u.elapsed_s,
            self.usage.cached_tokens + u.cached_tokens,
        )


class Session:
    """The conversation with one user. All of its state lives here (one object per stream)."""

    def __init__(
        self,
        backend: BackendLike,
        *,
        config: AssistantConfig | None = None,
        tools: ToolRegistryLike | None = None,
        tool_context: ToolContextLike | None = None,
        retriever: RetrieverLike | None = None,
        voice_bank: VoiceBankLike | None = None,
        token2wav: Token2WavLike | None = None,
        voice: str | None = None,
        client_tools: Iterable[str | Mapping[str, Any]] = (),
        task: str = "chat",
        target_lang: str | None = None,
        generation: Mapping[str, Any] | None = None,
        style: str | None = None,
    ):
        self.backend = backend
        self.config = config or AssistantConfig()
        self.tools = tools if self.config.tool_loop.enabled else None
        self.retriever = retriever
        self.voice_bank = voice_bank
        self.token2wav = token2wav
        self._history = History()
        self.transcriber = Transcriber(backend)
        self.request = RequestBuilder(self.config, lambda: self._history, self._schemas_for_chat,
                                      tokenizer=getattr(backend, "tokenizer", None), task=task,
                                      target_lang=target_lang, generation=generation, transcribe=self.transcriber,
                                      style=style)
        self.rag = Rag(retriever, self.config.rag)
        self.voice_control = VoiceControl(voice_bank, token2wav, voice or self.config.voice)
        self.tool_context = tool_context if tool_context is not None else self._make_tool_context()
        if self.tool_context is not None and getattr(self.tool_context, "on_voice_change", None) is None:
            self.tool_context.on_voice_change = self.voice_control.on_tool_change
        self.runner = ToolRunner(self.tools, self.tool_context, self.config.tool_loop)
        self.client = ClientCalls(client_tools, self.runner, self._history)
        # The KV cache kept across turns (local backend; `prefix_cache = false` turns reuse off).
        self.prefix = backend.new_prefix_cache(self.config.prefix_cache) if hasattr(backend, "new_prefix_cache") else None
        self.last_request: list[Message] = []  # the messages of the latest generation request
        self.last_options: GenerationOptions | None = None  # and its options

    # ---- the parts, under the names callers use ---------------------------------------

    @property
    def history(self) -> list[Message]:
        return self._history.messages

    @history.setter
    def history(self, messages: list[Message]) -> None:
        self._history = History(messages)
        self.client.history = self._history

    task = property(lambda self: self.request.task)

    @property
    def style(self) -> str | None:
        """How the assistant speaks (assistant.style: a preset name or free text; None: as it likes)."""
        return self.request.style

    @style.setter
    def style(self, value: str | None) -> None:
        self.request.style = value

    target_lang = property(lambda self: self.request.target_lang)
    generation = property(lambda self: self.request.generation)
    counter: TokenCounter = property(lambda self: self.request.counter)  # type: ignore[assignment]
    compaction: CompactionTotals = property(lambda self: self.request.compaction)  # type: ignore[assignment]
    last_compaction: CompactionStats | None = property(  # type: ignore[assignment]
        lambda self: self.request.last_compaction)
    client_tools = property(lambda self: self.client.tools)
    pending_client_calls = property(lambda self: self.client.pending)
    voices: SessionVoices = property(lambda self: self.voice_control.voices)  # type: ignore[assignment]
    speech_out: SpeechOut | None = property(lambda self: self.voice_control.speech_out)  # type: ignore[assignment]

    @property
    def voice(self) -> str | None:
        return self.voice_control.current

    @voice.setter
    def voice(self, name: str | None) -> None:
        self.voice_control.set(name)

    # ---- public -------------------------------------------------------------------

    def truncate_last_reply(self, played_s: float) -> Message | None:
        """Barge-in: keep only what the user heard of the latest spoken reply (see History)."""
        if self.speech_out is not None:
            self.speech_out.abort()
        return self._history.truncate_last_reply(played_s, getattr(self.backend, "tokenizer", None))

    def add_tool_output(self, call_id: str, output: str) -> ToolResult:
        """The answer to a client-side call; once all are in, `respond(None)` continues the turn."""
        return self.client.add_output(call_id, output)

    def set_voice(self, name: str | None, reason: str = "") -> VoiceChanged:
        """Switch the speaking voice (from the next spoken segment on)."""
        return self.voice_control.set(name, reason)

    async def prepare_speech(self) -> None:
        """Prepare the current voice for speaking (prompt + token2wav stream start) before
        the first reply, e.g. while the microphone waits for the user."""
        await self.voice_control.prepare()

    def voice_prompt(self, name: str | None = None) -> Any:
        """The token2wav prompt of `name` (default: the current voice), prepared now (it can take seconds:
        call it from a worker thread before the first spoken reply to avoid the wait then)."""
        return self.voice_control.prompt(name)

    # ---- the turn -------------------------------------------------------------------

    async def respond(
        self,
        user_input: str | np.ndarray | Message | None,
        *,
        reply: str | None = None,
        cancel: asyncio.Event | None = None,
        style: str | None = None,
        commit_gate: asyncio.Event | None = None,
    ) -> AsyncIterator[Event]:
        """Answer `user_input` (None: answer from history as it is, e.g. after client tool outputs).
        `style`: how to speak in this turn only (assistant.style; the session's `style` otherwise).
        `commit_gate`: a speculative turn (assistant.speculation): tools wait until it is set.
        Ends with one TurnEnd."""
        self.request.turn_style = style
        reply = reply or self.config.reply
        task = self.request.preset(reply)
        reply = task.reply or reply
        if user_input is None:  # answer from history as it is (pending client calls stay pending)
            user = None
        else:
            self.client.settle()
            user = user_message(user_input)
            self._history.append(user)
        state = TurnState()
        if user is not None and self.rag.active and self.config.rag.transcribe_audio:
            user = await self.transcriber.with_transcripts(user, self._history)
        context = await self.rag.context_for(user) if user is not None else None
        rounds = 0
        while True:
            final_round = rounds >= self.config.tool_loop.max_rounds
            record = ReplyRecord()
            async with aclosing(self._generate(record, task, reply, context, cancel, state)) as events:
                async for event in events:
                    yield event
            end = record.end
            interrupted = (end is not None and end.reason == "cancelled") or (cancel is not None and cancel.is_set())
            calls = record.calls
            if not calls:
                for event in self._fallback(state, record):
                    yield event
                break
            server = [c for c in calls if not self.client.is_client(c)]
            client = [c for c in calls if self.client.is_client(c)]
            if not interrupted and not await _committed(commit_gate, cancel):
                interrupted = True  # a discarded speculation: no tool ever ran
            if interrupted or final_round:
                results = (cancelled(calls) if interrupted else
                           [result(c, LIMIT.format(n=self.config.tool_loop.max_rounds), False) for c in calls])
                for r in results:
                    yield r
                self._history.append(self.runner.input_turn(results, last=True))
                break
            async with aclosing(self._run_tools(server, last=not client, cancel=cancel, state=state)) as running:
                async for r in running:
                    yield r
            for v in self.voice_control.take_events():
                yield v
            if client:
                self.client.wait_for(client)
                break
            if cancel is not None and cancel.is_set():
                break
            rounds += 1
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
        else:
            reason = state.last_end.reason if state.last_end else "error"
        last = state.last_end or TurnEnd("error", error="the backend ended without a TurnEnd")
        yield TurnEnd(reason, state.usage, last.token_ids, last.error)

    async def _generate(self, record: ReplyRecord, task: Preset, reply: str, context: Message | None,
                        cancel: asyncio.Event | None, state: TurnState) -> AsyncIterator[Event]:
        """One generation round: request, stream (speech synthesised as it comes), reply into history."""
        messages = await self.request.build(task, reply, context)
        options = self.request.options(task, reply)
        self.last_request = messages
        self.last_options = options
        if self.prefix is not None:
            stream = self.backend.generate(messages, options, cancel, prefix=self.prefix)
        else:
            stream = self.backend.generate(messages, options, cancel)
        speech_out = self.speech_out
        finished = False
        try:
            try:
                async for event in stream:
                    if isinstance(event, TurnEnd):
                        record.add(event)
                        break
                    record.add(event)
                    yield event
                    if isinstance(event, SpeechCodes) and speech_out is not None:
                        chunk = await speech_out.push(event.codes)
                        if chunk is not None:
                            yield chunk
            except Exception as e:  # noqa: BLE001 - any backend failure ends the round, never the session
                # A backend failure ends the round; what was produced so far is kept.
                log.warning("generation failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
                record.add(TurnEnd("error", error=str(e).splitlines()[0] if str(e) else type(e).__name__))
            finally:
                await _aclose(stream)
            if speech_out is not None:
                chunk = await speech_out.finish()
                if chunk is not None:
                    yield chunk
            finished = True
        finally:  # runs also when the consumer stops listening: history keeps what was produced
            end = record.end or TurnEnd("cancelled")
            record.end = end
            state.last_end = end
            state.add_usage(end.usage)
            self._history.add_reply(record, getattr(self.backend, "tokenizer", None), reply)
            if not finished and record.calls:
                self._history.append(self.runner.input_turn(cancelled(record.calls), last=True))
                record.calls.clear()

    async def _run_tools(self, calls: list[ToolCall], *, last: bool, cancel: asyncio.Event | None,
                         state: TurnState) -> AsyncIterator[ToolResult]:
        """Run the server-side calls; every call gets an answer in history, also when the consumer leaves."""
        results: list[ToolResult] = []
        try:
            async with aclosing(self.runner.run(calls, cancel)) as running:
                async for r in running:
                    results.append(r)
                    if not r.ok:
                        state.failed_tools.append(r.name)
                    yield r
        finally:
            answered = {r.call_id for r in results}
            results += cancelled(c for c in calls if c.id not in answered)
            order = {c.id: i for i, c in enumerate(calls)}
            if results:
                self._history.append(self.runner.input_turn(sorted(results, key=lambda r: order.get(r.call_id, 0)),
                                                            last=last))

    def _fallback(self, state: TurnState, record: ReplyRecord) -> list[Event]:
        """A failed tool followed by silence: say that it failed rather than nothing."""
        text = fallback_text(self.config.language, state.failed_tools, spoke=record.spoken, text=record.text)
        if text is None:
            return []
        self._history.append(Message("assistant", [Text(text)]))
        return [TextDelta(text, "text")]

    def speculate(self, user_input: str | np.ndarray | Message, *, reply: str | None = None,
                  style: str | None = None) -> "Speculation":
        """Start answering `user_input` silently (at a short pause); `commit()` plays it, `discard()`
        leaves the session untouched (assistant.speculation). Call from a running event loop."""
        from stepvoice.assistant.speculation import Speculation

        return Speculation(self, user_input, reply=reply, style=style)

    # ---- wiring ---------------------------------------------------------------------

    def _preset(self, reply: str) -> Preset:  # kept for callers of the pre-split names
        return self.request.preset(reply)

    def _system_prompt(self, task: Preset, reply: str) -> str:
        return self.request.system_prompt(task, reply)

    def _schemas_for_chat(self) -> list[dict[str, Any]]:
        schemas = list(self.tools.schemas()) if self.tools is not None else []
        return schemas + self.client.schemas()

    def _make_tool_context(self) -> Any:
        if self.tools is None:
            return None
        from stepvoice.tools import ToolContext

        return ToolContext(config=self.config.tools, voice_bank=self.voice_bank, retriever=self.retriever,
                           on_voice_change=self.voice_control.on_tool_change)


async def _committed(gate: asyncio.Event | None, cancel: asyncio.Event | None) -> bool:
    """Wait for a speculative turn's commit; False when it was cancelled (discarded) instead."""
    if gate is None or gate.is_set():
        return True
    waits = [asyncio.ensure_future(gate.wait())] + ([asyncio.ensure_future(cancel.wait())] if cancel else [])
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return gate.is_set() and not (cancel is not None and cancel.is_set())


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a finished or failed stream must not hide the real outcome
            pass


__all__ = ["Session", "TurnState", "ASSISTANT_OPENER_TOKENS", "FALLBACK"]
