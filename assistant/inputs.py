"""What a user may hand `Session.respond`: text, 16 kHz samples, or a Message; checked with one clear error."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from stepvoice.engine.errors import AudioError, StepvoiceError
from stepvoice.engine.messages import Audio, Message, Text


def user_message(user_input: str | np.ndarray | Message) -> Message:
    if isinstance(user_input, Message):
        if user_input.role not in ("human", "input"):
            raise StepvoiceError(f"a user message has role human or input, not {user_input.role}")
        return user_input
    if isinstance(user_input, str):
        if not user_input.strip():
            raise StepvoiceError("empty input: say or type something")
        return Message("human", [Text(user_input)])
    if isinstance(user_input, np.ndarray):
        return Message("human", [Audio(check_samples(user_input))])
    raise StepvoiceError(f"unsupported input of type {type(user_input).__name__}: give text, samples or a Message")


def check_samples(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise AudioError(f"audio input must be mono 1-D samples, got shape {x.shape}")
    if x.size == 0:
        raise AudioError("audio input is empty")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"audio input must be float samples at 16 kHz, not {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise AudioError("audio input contains NaN or infinite samples")
    return x.astype(np.float32, copy=False)


def last_human_index(messages: Sequence[Message]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "human":
            return i
    return None
