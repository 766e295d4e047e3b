"""The session factory `stepvoice serve` uses: one `assistant.session.Session` per connection.

Shared by all connections: the tool registry, the voice bank, token2wav and
(except for the scripted fake engine, whose script is per connection) the
backend. Per connection: the Session (history, voice, pending client tool
calls) built from the connection's `session.update` settings. A settings
change builds the next response's Session from the previous one: history,
pending client tool calls (a handoff's `session.update` arrives before the
call's output) and the backend carry over.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, Mapping

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.server.settings import SessionSettings
# Imported with the factory (at startup), not by the first connection's first response on the loop.
from stepvoice.assistant.session import Session
from stepvoice.assistant.transcribe import Transcriber
from stepvoice.assistant.server.voices import VoiceMap
from stepvoice.engine.messages import Audio, Message


class AssistantSessions:
    def __init__(self, new_backend: Callable[[], Any], *, config: AssistantConfig | None = None, tools: Any = None,
                 voice_bank: Any = None, token2wav: Any = None, retriever: Any = None, model_name: str = "step-audio-2-mini",
                 voice_map: Mapping[str, str] | None = None, asr_backend: Callable[[Any], Any] | None = None):
        self.new_backend = new_backend
        self.config = config or AssistantConfig()
        self.tools = tools
        self.voice_bank = voice_bank
        self.token2wav = token2wav
        self.retriever = retriever
        self.model_name = model_name
        self.voice_map = VoiceMap(voice_map)
        # The backend input transcription runs on (default: the one answering). Tests give the
        # scripted engine a second script here, so transcripts do not consume the replies.
        self.asr_backend = asr_backend or (lambda backend: backend)

    def build(self, settings: SessionSettings, previous: Any = None) -> Any:
        config = self.config.model_copy(update={
            "system_prompt": settings.instructions or self.config.system_prompt,
            "voice": settings.voice or self.config.voice,
        })
        backend = previous.backend if previous is not None else self.new_backend()
        generation = {"max_new_tokens": settings.max_output_tokens} if settings.max_output_tokens else None
        session = Session(
            backend, config=config, tools=self.tools, voice_bank=self.voice_bank, token2wav=self.token2wav,
            retriever=self.retriever, voice=settings.voice, client_tools=settings.tools, generation=generation,
        )
        if previous is not None:
            session.history = list(previous.history)
            _pending(session).update(_pending(previous))  # a call made before the update is still answerable
            if getattr(session, "prefix", None) is not None and getattr(previous, "prefix", None) is not None:
                session.prefix = previous.prefix  # same backend: the kept KV cache survives session.update (#12)
        if session.speech_out is not None:
            session.speech_out.warm_in_background()  # the voice's stream start, before the first response
        return session

    def fork(self, session: Any, settings: SessionSettings, history: list[Message]) -> Any:
        """An out-of-band session: same backend and settings, its own history, nothing pending."""
        forked = self.build(settings, None if session is None else _Carrier(session.backend))
        forked.history = list(history)
        return forked

    @contextmanager
    def overrides(self, session: Any, *, instructions: str | None = None,
                  max_output_tokens: int | None = None) -> Iterator[None]:
        """`response.create`'s instructions / max_output_tokens for one response only."""
        # the request builder (after the session split) reads its own reference to the config
        holders = [h for h in (session, getattr(session, "request", None)) if h is not None and hasattr(h, "config")]
        saved = [(h, h.config) for h in holders]
        saved_generation = dict(session.generation)
        if instructions is not None:
            config = session.config.model_copy(update={"system_prompt": instructions})
            for h in holders:
                h.config = config
        if max_output_tokens is not None:
            session.generation["max_new_tokens"] = max_output_tokens
        try:
            yield
        finally:
            for h, config in saved:
                h.config = config
            session.generation.clear()
            session.generation.update(saved_generation)

    def transcriber(self, session: Any) -> Callable[[Audio], Awaitable[str]]:
        """Input transcription: the model's ASR preset on the session's (or the ASR) backend."""
        return Transcriber(self.asr_backend(session.backend))

    def pending_calls(self, session: Any) -> list[str]:
        """Ids of client tool calls still waiting for their output."""
        return list(_pending(session))

    def resolve_voice(self, name: str) -> str | None:
        return self.voice_map.resolve(name, self.voices())

    def voices(self) -> list[str]:
        """Names a client may pick (without a bank the session knows only the default voice)."""
        if self.voice_bank is None:
            return ["default"]
        names = [getattr(v, "name", v) for v in self.voice_bank.list()]
        return names if "default" in names else ["default", *names]


class _Carrier:
    """Hands a backend to `build` without a history or pending calls."""

    history: list = []

    def __init__(self, backend: Any):
        self.backend = backend
        self.pending_client_calls: dict = {}


def _pending(session: Any) -> dict:
    """The session's pending client calls (by call id)."""
    calls = getattr(session, "pending_client_calls", None)
    if calls is None:  # after the session split: kept by its ClientCalls
        calls = session.client_calls.pending
    return calls
