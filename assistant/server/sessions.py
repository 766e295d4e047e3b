"""The session factory `stepvoice serve` uses: one `assistant.session.Session` per connection.

Shared by all connections: the tool registry, the voice bank, token2wav and
(except for the scripted fake engine, whose script is per connection) the
backend. Per connection: the Session (history, voice, pending client tool
calls) built from the connection's `session.update` settings.
"""
from __future__ import annotations

from typing import Any, Callable

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.server.realtime import SessionSettings


class AssistantSessions:
    def __init__(self, new_backend: Callable[[], Any], *, config: AssistantConfig | None = None, tools: Any = None,
                 voice_bank: Any = None, token2wav: Any = None, retriever: Any = None, model_name: str = "step-audio-2-mini"):
        self.new_backend = new_backend
        self.config = config or AssistantConfig()
        self.tools = tools
        self.voice_bank = voice_bank
        self.token2wav = token2wav
        self.retriever = retriever
        self.model_name = model_name

    def build(self, settings: SessionSettings, previous: Any = None) -> Any:
        from stepvoice.assistant.session import Session

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
        if session.speech_out is not None:
            session.speech_out.warm_in_background()  # the voice's stream start, before the first response
        return session

    def voices(self) -> list[str]:
        """Names a client may pick (empty: any name is passed on to the session)."""
        if self.voice_bank is None:
            return ["default"] if self.token2wav is not None else []
        names = [getattr(v, "name", v) for v in self.voice_bank.list()]
        return names if "default" in names else ["default", *names]
