"""What a Session is built from, as typed protocols (the tools package, a retriever,
a voice bank, token2wav and a backend all satisfy them structurally).

They name the few methods the assistant calls, so a test can hand in a small
fake and a reader sees what each part must do.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Iterable, Protocol, Sequence, runtime_checkable

from stepvoice.engine.events import EngineEvent
from stepvoice.engine.messages import Message
from stepvoice.engine.options import GenerationOptions


@runtime_checkable
class BackendLike(Protocol):
    """engine.backends: local, vLLM, scripted (a `tokenizer` attribute is optional)."""

    def generate(self, messages: Sequence[Message], options: GenerationOptions,
                 cancel: asyncio.Event | None = None) -> AsyncIterator[EngineEvent]: ...


class ToolRegistryLike(Protocol):
    """tools.ToolRegistry: the server-side tools and their JSON schemas."""

    def schemas(self) -> Iterable[dict[str, Any]]: ...


class ToolContextLike(Protocol):
    """tools.ToolContext: what tools may reach; `on_voice_change` is set by the session."""

    on_voice_change: Callable[[str], None] | None


class RetrieverLike(Protocol):
    """retrieval.Retriever: hits with `text`, `source`/`path` and `score`."""

    def search(self, query: str, k: int = ...) -> list[Any]: ...


class VoiceBankLike(Protocol):
    """voice_bank.VoiceBank: named voices and their token2wav prompts."""

    def get(self, name: str) -> Any: ...
    def prompt(self, name: str) -> Any: ...


class Token2WavLike(Protocol):
    """engine.token2wav.Token2Wav: voice prompts and streaming synthesis."""

    def prepare_voice(self, path: Any) -> Any: ...


__all__ = ["BackendLike", "ToolRegistryLike", "ToolContextLike", "RetrieverLike", "VoiceBankLike", "Token2WavLike"]
