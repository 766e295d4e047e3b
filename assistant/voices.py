"""Which voices a session may speak with, and their token2wav prompts (cached per session)."""
from __future__ import annotations

from typing import Any

from stepvoice.engine.errors import StepvoiceError
from stepvoice.voice_bank import DEFAULT_VOICE  # the s3tokenizer clip


class SessionVoices:
    """Checks voice names against the voice bank and prepares their prompts once."""

    def __init__(self, voice_bank: Any, token2wav: Any) -> None:
        self.voice_bank = voice_bank
        self.token2wav = token2wav
        self._prompts: dict[str | None, Any] = {}

    def default(self) -> str | None:
        """The bank's default voice; None without a bank (token2wav then uses the shipped clip)."""
        return DEFAULT_VOICE if self.voice_bank is not None else None

    def check(self, name: str | None) -> None:
        if name is None:
            return
        if self.voice_bank is None:
            if name != DEFAULT_VOICE:
                raise StepvoiceError(f"unknown voice {name!r}: there is no voice bank (add voices with "
                                     "`stepvoice voices add`)")
            return
        try:
            self.voice_bank.get(name)
        except StepvoiceError:
            raise
        except (KeyError, LookupError, ValueError) as e:
            raise StepvoiceError(f"unknown voice {name!r}") from e

    def prompt(self, name: str | None) -> Any:
        """The token2wav prompt of a voice (voice bank, else the default clip)."""
        if name in self._prompts:
            return self._prompts[name]
        if self.voice_bank is not None and name is not None:
            prompt = self.voice_bank.prompt(name)
        else:
            from stepvoice.engine.token2wav import default_voice_path

            prompt = self.token2wav.prepare_voice(default_voice_path())
        self._prompts[name] = prompt
        return prompt
