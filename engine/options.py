"""Generation options shared by every backend."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Reply = Literal["text", "speech", "think"]


@dataclass
class GenerationOptions:
    """Sampling and reply mode. temperature 0 means greedy.

    reply: "text" opens `<|BOT|>assistant\\n`; "speech" adds `<tts_start>` (TA4);
    "think" lets a Think model reason first, then speak.
    Defaults follow the official chat examples (temperature 0.7, top-p 0.9,
    repetition penalty 1.05).
    """

    max_new_tokens: int = 2048
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.05
    seed: int | None = None
    reply: Reply = "text"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.reply not in ("text", "speech", "think"):
            raise ValueError(f"reply must be text, speech or think, not {self.reply!r}")
