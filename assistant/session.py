"""One conversation with the model: history, tool loop, retrieval, voice, context management.

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
"""
from __future__ import annotations

import asyncio
import json
import logging
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Mapping

import numpy as np

from stepvoice.assistant.compaction import CompactionStats, CompactionTotals, TokenCounter, compact
from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.history import History, ReplyRecord
from stepvoice.assistant.presets import ASR_PROMPT, Preset, preset
from stepvoice.assistant.inputs import last_human_index, user_message
from stepvoice.assistant.rag import Rag
from stepvoice.assistant.speech_out import SpeechOut
from stepvoice.assistant.voices import SessionVoices
from stepvoice.assistant.tool_loop import LIMIT, NO_CLIENT_OUTPUT, ToolRunner, cancelled, client_tool_map, result
from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.events import (
    Event, SpeechCodes, TextDelta, ToolCall, ToolResult, TurnEnd, Usage, VoiceChanged,
)
from stepvoice.engine.messages import Audio, Message, Text
from stepvoice.engine.options import GenerationOptions

log = logging.getLogger(__name__)

ASSISTANT_OPENER_TOKENS = 8  # <|BOT|>assistant\n<tts_start> (and think's opener) with margin
FALLBACK = {  # said when the model stays silent after a failed tool
    "zh": "抱歉，{name}没有成功，请稍后再试。",
    "en": "Sorry, {name} did not work this time. Please try again later.",
}


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
        )


class Session:
    """The conversation with one user. All of its state lives here (one object per stream)."""

    def __init__(
        self,
        backend: Any,
        *,
        config: AssistantConfig | None = None,
        tools: Any = None,
        tool_context: Any = None,
        retriever: Any = None,
        voice_bank: Any = None,
        token2wav: Any = None,
        voice: str | None = None,
        client_tools: Iterable[str | Mapping[str, Any]] = (),
        task: str = "chat",
        target_lang: str | None = None,
        generation: Mapping[str, Any] | None = None,
    ):
        self.backend = backend
        self.config = config or AssistantConfig()
        self.tools = tools if self.config.tool_loop.enabled else None
        self.retriever = retriever
        self.voice_bank = voice_bank
        self.token2wav = token2wav
        self.task = task
        self.target_lang = target_lang
        self.generation = dict(generation or {})  # explicit sampling (flags): beats the task preset
        self.client_tools = client_tool_map(client_tools)
        preset(task, target_lang=target_lang)  # fail now on an unknown task or a missing target language
        self._history = History()
        self.rag = Rag(retriever, self.config.rag)
        self.voices = SessionVoices(voice_bank, token2wav)
        self.voice: str | None = voice or self.config.voice or self.voices.default()
        if voice or self.config.voice:
            self.voices.check(self.voice)
        self._voice_events: list[VoiceChanged] = []
        self.speech_out = SpeechOut(token2wav, self.voices.prompt, self.voice) if token2wav is not None else None
        self.tool_context = tool_context if tool_context is not None else self._make_tool_context()
        if self.tool_context is not None and getattr(self.tool_context, "on_voice_change", None) is None:
            self.tool_context.on_voice_change = self._on_voice_change
        self.runner = ToolRunner(self.tools, self.tool_context, self.config.tool_loop)
        self.pending_client_calls: dict[str, ToolCall] = {}
        self.counter = TokenCounter(getattr(backend, "tokenizer", None))
        self.last_compaction: CompactionStats | None = None  # the latest pass
        self.compaction = CompactionTotals()  # all passes of this conversation (ratio = full history / prompt)
        self.last_request: list[Message] = []  # the messages of the latest generation request

    # ---- public -------------------------------------------------------------------

    @property
    def history(self) -> list[Message]:
        return self._history.messages

    @history.setter
    def history(self, messages: list[Message]) -> None:
        self._history = History(messages)

    def truncate_last_reply(self, played_s: float) -> Message | None:
        """Barge-in: keep only what the user heard of the latest spoken reply (see History)."""
        if self.speech_out is not None:
            self.speech_out.abort()
        return self._history.truncate_last_reply(played_s, getattr(self.backend, "tokenizer", None))

    def add_tool_output(self, call_id: str, output: str) -> ToolResult:
        """The answer to a client-side call; once all are in, `respond(None)` continues the turn."""
        call = self.pending_client_calls.pop(call_id, None)
        if call is None:
            known = ", ".join(self.pending_client_calls) or "none"
            raise StepvoiceError(f"no pending client tool call {call_id!r} (pending: {known})")
        answer = ToolResult(call.id, call.name, str(output), ok=True)
        self._history.append(self.runner.input_turn([answer], last=not self.pending_client_calls))
        return answer

    def set_voice(self, name: str | None, reason: str = "") -> VoiceChanged:
        """Switch the speaking voice (from the next spoken segment on)."""
        self.voices.check(name)
        self.voice = name
        if self.speech_out is not None:
            self.speech_out.set_voice(name)
        return VoiceChanged(name or "default", reason)

    async def respond(
        self,
        user_input: str | np.ndarray | Message | None,
        *,
        reply: str | None = None,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[Event]:
        """Answer `user_input` (None: continue after client tool outputs). Ends with one TurnEnd."""
        reply = reply or self.config.reply
        task = self._preset(reply)
        reply = task.reply or reply
        if user_input is None:
            if self.pending_client_calls:
                raise StepvoiceError("waiting for the output of client tool call(s) "
                                     + ", ".join(self.pending_client_calls) + ": call add_tool_output first")
            if not self.history or self.history[-1].role != "input":
                raise StepvoiceError("nothing to continue: respond(None) follows add_tool_output")
            user = None
        else:
            self._settle_client_calls()
            user = user_message(user_input)
            self._history.append(user)
        state = TurnState()
        if user is not None and self.rag.active and self.config.rag.transcribe_audio:
            user = await self._with_transcripts(user)
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
                async for event in self._maybe_fallback(state, task, record):
                    yield event
                break
            server = [c for c in calls if c.name not in self.client_tools]
            client = [c for c in calls if c.name in self.client_tools]
            if interrupted:
                results = cancelled(calls)
                for r in results:
                    yield r
                self._history.append(self.runner.input_turn(results, last=True))
                break
            if final_round:
                results = [result(c, LIMIT.format(n=self.config.tool_loop.max_rounds), False) for c in calls]
                for r in results:
                    yield r
                self._history.append(self.runner.input_turn(results, last=True))
                break
            results: list[ToolResult] = []
            try:
                async with aclosing(self.runner.run(server, cancel)) as running:
                    async for r in running:
                        results.append(r)
                        if not r.ok:
                            state.failed_tools.append(r.name)
                        yield r
            finally:  # also when the consumer stops listening: every call gets an answer in history
                answered = {r.call_id for r in results}
                results += cancelled(c for c in server if c.id not in answered)
                order = {c.id: i for i, c in enumerate(server)}
                if results:
                    self._history.append(self.runner.input_turn(sorted(results, key=lambda r: order.get(r.call_id, 0)),
                                                          last=not client))
            for v in self._take_voice_events():
                yield v
            if client:
                for c in client:
                    self.pending_client_calls[c.id] = c
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

    # ---- one generation round -----------------------------------------------------

    async def _generate(self, record: ReplyRecord, task: Preset, reply: str, context: Message | None,
                        cancel: asyncio.Event | None, state: TurnState) -> AsyncIterator[Event]:
        messages = await self._request(task, reply, context)
        options = self._options(task, reply)
        self.last_request = messages
        stream = self.backend.generate(messages, options, cancel)
        finished = False
        try:
            try:
                async for event in stream:
                    if isinstance(event, TurnEnd):
                        record.add(event)
                        break
                    record.add(event)
                    yield event
                    if isinstance(event, SpeechCodes) and self.speech_out is not None:
                        chunk = await self.speech_out.push(event.codes)
                        if chunk is not None:
                            yield chunk
            except Exception as e:  # noqa: BLE001 - any backend failure ends the round, never the session
                # A backend failure ends the round; what was produced so far is kept.
                log.warning("generation failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
                record.add(TurnEnd("error", error=str(e).splitlines()[0] if str(e) else type(e).__name__))
            finally:
                await _aclose(stream)
            if self.speech_out is not None:
                chunk = await self.speech_out.finish()
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

    async def _request(self, task: Preset, reply: str, context: Message | None) -> list[Message]:
        head = [Message.text("system", self._system_prompt(task, reply))]
        schemas = self._schemas(task)
        if schemas:
            head.append(Message.text("tool_json_schemas", json.dumps(schemas, ensure_ascii=False)))
        fixed = self.counter.total(head) + (self.counter(context) if context is not None else 0)
        budget = (self.config.context.max_context_tokens - fixed - self._options(task, reply).max_new_tokens
                  - ASSISTANT_OPENER_TOKENS)
        transcribe = self._transcribe if self.config.context.transcribe_audio else None
        compacted, stats = await compact(self.history, budget, self.counter,
                                         keep_last=self.config.context.keep_last_turns, transcribe=transcribe)
        if compacted is not self.history:
            self._history.messages[:] = compacted  # compaction is permanent: history stays bounded
        self.last_compaction = stats
        self.compaction.add(stats)
        body = list(self.history) if task.keep_history else self._current_turn()
        if context is not None:
            at = last_human_index(body)
            body.insert(at if at is not None else len(body), context)
        return head + body

    def _current_turn(self) -> list[Message]:
        at = last_human_index(self.history)
        return list(self.history[at:]) if at is not None else list(self.history)

    def _options(self, task: Preset, reply: str) -> GenerationOptions:
        g = self.config.generation
        values: dict[str, Any] = dict(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                                      top_k=g.top_k, repetition_penalty=g.repetition_penalty, seed=g.seed)
        if task.temperature is not None:
            values["temperature"] = task.temperature
        if task.top_p is not None:
            values["top_p"] = task.top_p
        values.update({k: v for k, v in self.generation.items() if v is not None})
        try:
            return GenerationOptions(reply=reply, **values)  # type: ignore[arg-type]
        except (TypeError, ValueError) as e:
            raise StepvoiceError(f"bad generation option: {e}") from None

    def _preset(self, reply: str) -> Preset:
        return preset(self.task, reply=reply, target_lang=self.target_lang,
                      with_tools=bool(self._schemas_for_chat()), persona=self.config.persona,
                      language=self.config.language)

    def _system_prompt(self, task: Preset, reply: str) -> str:
        if self.config.system_prompt and task.name == "chat":
            return self.config.system_prompt
        return task.system_prompt

    def _schemas_for_chat(self) -> list[dict[str, Any]]:
        schemas = list(self.tools.schemas()) if self.tools is not None else []
        schemas += [s for s in self.client_tools.values() if s is not None]
        return schemas

    def _schemas(self, task: Preset) -> list[dict[str, Any]]:
        return self._schemas_for_chat() if task.use_tools else []

    # ---- tools ----------------------------------------------------------------------

    def _make_tool_context(self) -> Any:
        if self.tools is None:
            return None
        from stepvoice.tools import ToolContext

        return ToolContext(config=self.config.tools, voice_bank=self.voice_bank, retriever=self.retriever,
                           on_voice_change=self._on_voice_change)

    def _on_voice_change(self, name: str) -> None:
        """Called by timbre_rag (possibly from a worker thread): the new voice is heard from the next segment."""
        self._voice_events.append(self.set_voice(name, "timbre_rag"))

    def _take_voice_events(self) -> list[VoiceChanged]:
        events, self._voice_events = self._voice_events, []
        return events

    def _settle_client_calls(self) -> None:
        """A new user turn while client calls are unanswered: answer them so none stays pending."""
        if not self.pending_client_calls:
            return
        calls = list(self.pending_client_calls.values())
        self.pending_client_calls.clear()
        self._history.append(self.runner.input_turn([result(c, NO_CLIENT_OUTPUT, False) for c in calls], last=False))

    async def _maybe_fallback(self, state: TurnState, task: Preset, record: ReplyRecord) -> AsyncIterator[Event]:
        """A failed tool followed by silence: say that it failed rather than nothing."""
        if not state.failed_tools or record.spoken or record.text.strip():
            return
        text = FALLBACK[self.config.language].format(name=state.failed_tools[-1])
        yield TextDelta(text, "text")
        self._history.append(Message("assistant", [Text(text)]))

    # ---- inputs, voices, transcripts --------------------------------------------------

    async def _with_transcripts(self, user: Message) -> Message:
        """The user turn with a transcript on each audio part (ASR pass), replacing it in history."""
        if not any(isinstance(p, Audio) and p.transcript is None for p in user.content):
            return user
        parts = [Audio(p.samples, (await self._transcribe(p)).strip()) if isinstance(p, Audio) and p.transcript is None
                 else p for p in user.content]
        new = Message(user.role, parts)
        if self.history and self.history[-1] is user:
            self.history[-1] = new
        return new

    async def _transcribe(self, audio: Audio) -> str:
        """An ASR pass through the backend (greedy, the official ASR prompt) for compaction."""
        messages = [Message.text("system", ASR_PROMPT), Message("human", [Audio(audio.samples)])]
        options = GenerationOptions(max_new_tokens=256, temperature=0.0, reply="text")
        text = []
        async for event in self.backend.generate(messages, options, None):
            if isinstance(event, TextDelta) and event.channel == "text":
                text.append(event.text)
        return "".join(text)

    async def prepare_speech(self) -> None:
        """Prepare the current voice for speaking (prompt + token2wav stream start) before
        the first reply, e.g. while the microphone waits for the user."""
        if self.speech_out is not None:
            await self.speech_out.warm()

    def voice_prompt(self, name: str | None = None) -> Any:
        """The token2wav prompt of `name` (default: the current voice), prepared now (it can take seconds:
        call it from a worker thread before the first spoken reply to avoid the wait then)."""
        if self.token2wav is None:
            raise StepvoiceError("no token2wav: this session does not synthesise speech")
        return self.voices.prompt(self.voice if name is None else name)


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a finished or failed stream must not hide the real outcome
            pass


__all__ = ["Session", "TurnState"]
