"""One generation request: system prompt, tool schemas, bounded history and the RAG context.

`RequestBuilder.build` is where compaction happens (permanently: history
stays bounded) and where the session's task preset, persona and sampling
flags become messages and `GenerationOptions`.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Mapping

from stepvoice.assistant.compaction import CompactionStats, CompactionTotals, TokenCounter, compact
from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.history import History
from stepvoice.assistant.inputs import last_human_index
from stepvoice.assistant.presets import Preset, preset
from stepvoice.assistant.style import with_style
from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.messages import Audio, Message
from stepvoice.engine.options import GenerationOptions

ASSISTANT_OPENER_TOKENS = 8  # <|BOT|>assistant\n<tts_start> (and think's opener) with margin


class RequestBuilder:
    """Builds the messages and options of each round for one session."""

    def __init__(
        self,
        config: AssistantConfig,
        history: Callable[[], History],
        schemas: Callable[[], list[dict[str, Any]]],
        *,
        tokenizer: Any = None,
        task: str = "chat",
        target_lang: str | None = None,
        generation: Mapping[str, Any] | None = None,
        transcribe: Callable[[Audio], Awaitable[str]] | None = None,
        style: str | None = None,
    ):
        self.config = config
        self._history = history  # a getter: `Session.history = [...]` replaces the History object
        self.schemas_for_chat = schemas
        self.task = task
        self.target_lang = target_lang
        self.generation = dict(generation or {})  # explicit sampling (flags): beats the task preset
        self.transcribe = transcribe
        self.style = style if style is not None else config.style  # assistant.style: preset or free text
        self.turn_style: str | None = None  # this turn only (respond(style=...), a TASKS.yaml turn)
        preset(task, target_lang=target_lang)  # fail now on an unknown task or a missing target language
        self.counter = TokenCounter(tokenizer)
        self.last_compaction: CompactionStats | None = None  # the latest pass
        self.compaction = CompactionTotals()  # all passes of this conversation (ratio = full history / prompt)

    def preset(self, reply: str) -> Preset:
        return preset(self.task, reply=reply, target_lang=self.target_lang,
                      with_tools=bool(self.schemas_for_chat()), persona=self.config.persona,
                      language=self.config.language)

    def system_prompt(self, task: Preset, reply: str) -> str:
        if self.config.system_prompt and task.name == "chat":
            base = self.config.system_prompt
        else:
            base = task.system_prompt
        style = self.turn_style if self.turn_style is not None else self.style
        return with_style(base, style, self.config.language)

    def schemas(self, task: Preset) -> list[dict[str, Any]]:
        return self.schemas_for_chat() if task.use_tools else []

    def options(self, task: Preset, reply: str) -> GenerationOptions:
        configured = self.config.generation.explicit()  # [generation] values that are set
        official = {k: v for k, v in task.sampling().items() if v is not None}
        # [generation] tunes chat over the official chat sampling; the other tasks keep their
        # example's sampling (ASR stays greedy); flags beat both; None is the backend's to fill.
        values: dict[str, Any] = {**official, **configured} if task.name == "chat" else {**configured, **official}
        values.update({k: v for k, v in self.generation.items() if v is not None})
        try:
            return GenerationOptions(reply=reply, **values)  # type: ignore[arg-type]
        except (TypeError, ValueError) as e:
            raise StepvoiceError(f"bad generation option: {e}") from None

    def head(self, task: Preset, reply: str) -> list[Message]:
        """The system prompt and tool schemas: the fixed start of every request."""
        head = [Message.text("system", self.system_prompt(task, reply))]
        schemas = self.schemas(task)
        if schemas:
            head.append(Message.text("tool_json_schemas", json.dumps(schemas, ensure_ascii=False)))
        return head

    async def build(self, task: Preset, reply: str, context: Message | None) -> list[Message]:
        """head + history (compacted to fit) with `context` just before the latest user turn."""
        history = self._history()
        head = self.head(task, reply)
        fixed = self.counter.total(head) + (self.counter(context) if context is not None else 0)
        budget = (self.config.context.max_context_tokens - fixed - self.options(task, reply).max_new_tokens
                  - ASSISTANT_OPENER_TOKENS)
        transcribe = self.transcribe if self.config.context.transcribe_audio else None
        compacted, stats = await compact(history.messages, budget, self.counter,
                                         keep_last=self.config.context.keep_last_turns, transcribe=transcribe)
        if compacted is not history.messages:
            history.messages[:] = compacted  # compaction is permanent: history stays bounded
        self.last_compaction = stats
        self.compaction.add(stats)
        body = list(history.messages) if task.keep_history else current_turn(history.messages)
        if context is not None:
            at = last_human_index(body)
            body.insert(at if at is not None else len(body), context)
        return head + body


def current_turn(messages: list[Message]) -> list[Message]:
    at = last_human_index(messages)
    return list(messages[at:]) if at is not None else list(messages)


__all__ = ["RequestBuilder", "ASSISTANT_OPENER_TOKENS", "current_turn"]
