"""What a loader produces: a named set of items in a stable order.

An item is one model request: its audio (one file, usually), an optional
question after it, earlier turns (StepEval-Audio-Toolcall is multi-turn), and
what to score against. `group` names the sub-table an item counts in
(LibriSpeech split, MMAU sound/speech/music, tool family, paralinguistic
dimension).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Turn:
    """An earlier turn of a conversation: the user's audio and/or text, or an assistant's text."""

    role: str  # "human" or "assistant"
    text: str = ""
    audio: str | None = None


@dataclass(frozen=True)
class Item:
    id: str
    audio: tuple[str, ...]
    reference: Any  # transcript, translation, answer, or the expected tool call (None: none expected)
    question: str = ""
    choices: tuple[str, ...] = ()
    group: str = ""
    history: tuple[Turn, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # loader-specific (tool family, polarity, ...)


@dataclass(frozen=True)
class Dataset:
    """A loaded set: `key` finds the published figure (e.g. librispeech-test-clean)."""

    name: str
    key: str
    language: str  # language of the references (target language for translation)
    items: tuple[Item, ...]
    source_language: str = ""
