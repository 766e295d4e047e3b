"""Conversation messages as the engine takes them (backend independent).

A message is a role and a list of parts. `engine.prompt` turns them into
token ids in the official chat format; the vLLM backend into the fork's JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np

Role = Literal["system", "human", "assistant", "tool_json_schemas", "input"]
ROLES: tuple[str, ...] = ("system", "human", "assistant", "tool_json_schemas", "input")


@dataclass(frozen=True)
class Text:
    """Text of a turn. It is encoded as untrusted data (engine.untrusted): special-token
    strings in it stay text. `token_ids`: the ids the model itself generated for an
    assistant reply; the prompt repeats them verbatim (never re-encoded from decoded text)."""

    text: str
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono float32 samples at 16 kHz (use `engine.audio.load_audio` to get them)."""

    samples: np.ndarray
    transcript: str | None = None  # known text of the audio, used when history is compacted

    @property
    def seconds(self) -> float:
        return len(self.samples) / 16000.0


@dataclass(frozen=True)
class Speech:
    """A spoken assistant reply as the model produced it (TA4).

    `token_ids` are the raw generated ids after `<tts_start>` when known (the
    local engine); history then sends them back verbatim. Otherwise the prompt
    builder re-interleaves `text` and `codes`.
    """

    text: str
    codes: tuple[int, ...] = ()
    token_ids: tuple[int, ...] | None = None
    tail_text: str = ""  # non-spoken text after <tts_end> (e.g. a tool call)


Part = Union[Text, Audio, Speech]


@dataclass
class Message:
    role: Role
    content: list[Part] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")

    @classmethod
    def text(cls, role: Role, text: str) -> "Message":
        return cls(role, [Text(text)])

    @property
    def plain_text(self) -> str:
        """The message's text with audio replaced by its transcript (if any)."""
        out = []
        for p in self.content:
            if isinstance(p, Text):
                out.append(p.text)
            elif isinstance(p, Speech):
                out.append(p.text + p.tail_text)
            elif p.transcript:
                out.append(p.transcript)
        return "".join(out)
