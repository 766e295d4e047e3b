"""ASR passes through the session's own backend: transcripts for RAG queries and compaction."""
from __future__ import annotations

from typing import Any

from stepvoice.assistant.history import History
from stepvoice.assistant.presets import ASR_PROMPT
from stepvoice.engine.events import TextDelta
from stepvoice.engine.messages import Audio, Message
from stepvoice.engine.options import GenerationOptions

ASR_MAX_TOKENS = 256


class Transcriber:
    """Greedy ASR with the official prompt, on the backend that answers the user."""

    def __init__(self, backend: Any):
        self.backend = backend

    async def __call__(self, audio: Audio) -> str:
        messages = [Message.text("system", ASR_PROMPT), Message("human", [Audio(audio.samples)])]
        options = GenerationOptions(max_new_tokens=ASR_MAX_TOKENS, temperature=0.0, reply="text")
        text = []
        async for event in self.backend.generate(messages, options, None):
            if isinstance(event, TextDelta) and event.channel == "text":
                text.append(event.text)
        return "".join(text)

    async def with_transcripts(self, user: Message, history: History) -> Message:
        """`user` with a transcript on each audio part, replacing it in `history` when it is the last turn."""
        if not any(isinstance(p, Audio) and p.transcript is None for p in user.content):
            return user
        parts = [Audio(p.samples, (await self(p)).strip()) if isinstance(p, Audio) and p.transcript is None
                 else p for p in user.content]
        new = Message(user.role, parts)
        if history.messages and history.messages[-1] is user:
            history.messages[-1] = new
        return new


__all__ = ["Transcriber", "ASR_MAX_TOKENS"]
