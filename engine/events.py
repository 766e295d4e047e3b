"""The one event vocabulary every stage of stepvoice passes on.

Small frozen dataclasses. The engine emits `TextDelta`, `SpeechCodes`,
`ToolCall` and `TurnEnd`; the assistant adds the rest. A stage is an async
iterator of events; consumers dispatch on the type.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import numpy as np

Channel = Literal["text", "speech", "think"]


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class TextDelta:
    """New text. `channel`: "text" for a text reply (or the non-spoken text after
    `<tts_end>`), "speech" for the text half of a spoken (TA4) reply, "think"
    for a Think model's reasoning."""

    text: str
    channel: Channel = "text"


@dataclass(frozen=True)
class SpeechCodes:
    """CosyVoice2 speech codes 0..6560 (25 per second), pads already dropped."""

    codes: tuple[int, ...]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for. `error` is set (and `arguments` may be empty)
    when the arguments could not be recovered; `raw` is the call's text as emitted."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    error: str | None = None
    id: str = field(default_factory=new_call_id)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0  # input audio the model heard
    elapsed_s: float = 0.0
    cached_tokens: int = 0  # leading prompt tokens whose keys/values came from the previous turn (prefix reuse)


TurnEndReason = Literal["stop", "length", "cancelled", "error", "script_exhausted"]


@dataclass(frozen=True)
class TurnEnd:
    """The end of one generation. `token_ids` are the generated ids (local
    engine) so a spoken reply can go back into history exactly as produced."""

    reason: TurnEndReason
    usage: Usage = field(default_factory=Usage)
    token_ids: tuple[int, ...] = ()
    error: str | None = None


# ---- events added by the assistant -------------------------------------------------


@dataclass(frozen=True)
class ToolResult:
    """What a tool answered, as the model will read it. `ok` is False for
    validation errors, unknown tools, timeouts and failures."""

    call_id: str
    name: str
    content: str
    ok: bool = True
    elapsed_s: float = 0.0
    data: Any = None  # structured result for programs (not shown to the model)


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """PCM for the speaker: float32 mono in [-1, 1]."""

    pcm: np.ndarray
    sample_rate: int = 24000


@dataclass(frozen=True)
class VoiceChanged:
    name: str
    reason: str = ""  # e.g. the timbre description that chose it


@dataclass(frozen=True)
class UserSpeechStarted:
    t: float = 0.0  # seconds on the session clock


@dataclass(frozen=True)
class UserSpeechStopped:
    t: float = 0.0


@dataclass(frozen=True)
class Interrupted:
    """The user spoke over the reply: playback stopped after `played_s` seconds."""

    played_s: float = 0.0
    reason: str = "barge-in"


EngineEvent = Union[TextDelta, SpeechCodes, ToolCall, TurnEnd]
Event = Union[
    TextDelta, SpeechCodes, ToolCall, TurnEnd, ToolResult, AudioChunk,
    VoiceChanged, UserSpeechStarted, UserSpeechStopped, Interrupted,
]
