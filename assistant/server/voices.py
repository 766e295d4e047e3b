"""OpenAI voice names -> voices of this server's bank.

Realtime apps pick voices by OpenAI's names (`alloy`, `marin`, the agents
SDK's default `ash` ...). Each name maps to a list of bank voices, tried in
order; the first one the bank has wins, else the server's default voice. The
table goes by the voices' gender and register, and `serve --voice-map
NAME=VOICE` (repeatable) overrides any row. A name that is neither an OpenAI
voice nor a bank voice is an error for that field only.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

DEFAULT = "default"
FEMALE = ("default",)  # the starter bank's clear, calm female voice
DEEP = ("mandarin_deep", "english_announcer", "default")  # the deeper starter voices, then the default
ANNOUNCER = ("english_announcer", "mandarin_deep", "default")

OPENAI_VOICES: dict[str, tuple[str, ...]] = {
    "alloy": FEMALE,  # neutral
    "ash": DEEP,  # male
    "ballad": ANNOUNCER,  # male, expressive
    "coral": FEMALE,
    "echo": DEEP,  # male
    "sage": FEMALE,
    "shimmer": FEMALE,
    "verse": ANNOUNCER,  # male
    "marin": FEMALE,
    "cedar": DEEP,  # male
}


class VoiceMap:
    """Resolves a client's voice name against the bank voices the server has."""

    def __init__(self, overrides: Mapping[str, str] | None = None):
        self.table: dict[str, tuple[str, ...]] = dict(OPENAI_VOICES)
        for name, voice in (overrides or {}).items():
            self.table[name] = (voice, *self.table.get(name, ()))

    def resolve(self, requested: str, available: Sequence[str]) -> str | None:
        """The bank voice for `requested`, or None when it is unknown. An empty `available`
        means the server knows no names (no bank): everything passes through."""
        if not available:
            return requested
        if requested in available:
            return requested
        for candidate in self.table.get(requested, ()):
            if candidate in available:
                return candidate
        if requested in self.table:
            return DEFAULT if DEFAULT in available else available[0]
        return None


def parse_voice_map(items: Iterable[str]) -> dict[str, str]:
    """`NAME=VOICE` flags -> a mapping; a malformed one raises ValueError naming it."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, voice = item.partition("=")
        if not sep or not name.strip() or not voice.strip():
            raise ValueError(f"--voice-map wants NAME=VOICE, not {item!r}")
        out[name.strip()] = voice.strip()
    return out
