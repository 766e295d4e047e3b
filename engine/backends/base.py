"""What every backend (local torch, vLLM client, scripted fake) provides."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Protocol, Sequence, runtime_checkable

from stepvoice.engine.events import EngineEvent
from stepvoice.engine.messages import Message
from stepvoice.engine.options import GenerationOptions


@runtime_checkable
class Backend(Protocol):
    """A source of engine events for one generation at a time per call.

    `generate` yields `TextDelta`, `SpeechCodes`, `ToolCall` and ends with
    exactly one `TurnEnd`. Setting `cancel` (or closing the iterator) stops it
    between tokens; the final event is then `TurnEnd("cancelled")`.
    Tools are declared by a `tool_json_schemas` message in `messages`.
    """

    name: str

    def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[EngineEvent]: ...
