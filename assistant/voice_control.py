"""The session's speaking voice: which one, its synthesis stream, and switches made by tools."""
from __future__ import annotations

from typing import Any

from stepvoice.assistant.speech_out import SpeechOut
from stepvoice.assistant.voices import SessionVoices
from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.events import VoiceChanged


class VoiceControl:
    """The current voice (checked against the bank), `speech_out` (None without token2wav),
    and the `VoiceChanged` events of switches a tool made during a round."""

    def __init__(self, voice_bank: Any, token2wav: Any, voice: str | None = None):
        self.token2wav = token2wav
        self.voices = SessionVoices(voice_bank, token2wav)
        self.current: str | None = voice or self.voices.default()
        if voice:
            self.voices.check(voice)
        self.speech_out = SpeechOut(token2wav, self.voices.prompt, self.current) if token2wav is not None else None
        self._events: list[VoiceChanged] = []

    def set(self, name: str | None, reason: str = "") -> VoiceChanged:
        """Switch the speaking voice (from the next spoken segment on)."""
        self.voices.check(name)
        self.current = name
        if self.speech_out is not None:
            self.speech_out.set_voice(name)
        return VoiceChanged(name or "default", reason)

    def on_tool_change(self, name: str) -> None:
        """Called by timbre_rag (possibly from a worker thread): the new voice is heard from the next segment."""
        self._events.append(self.set(name, "timbre_rag"))

    def take_events(self) -> list[VoiceChanged]:
        events, self._events = self._events, []
        return events

    async def prepare(self) -> None:
        """The current voice's prompt and stream start, before the first reply."""
        if self.speech_out is not None:
            await self.speech_out.warm()

    def prompt(self, name: str | None = None) -> Any:
        if self.token2wav is None:
            raise StepvoiceError("no token2wav: this session does not synthesise speech")
        return self.voices.prompt(self.current if name is None else name)


__all__ = ["VoiceControl"]
