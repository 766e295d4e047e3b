"""Validation of speech codes handed to token2wav."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.token2wav.config import NUM_CODES


class SpeechCodeError(StepvoiceError):
    """Speech codes that token2wav cannot voice (empty, not integers, outside 0..6560)."""


def check_codes(codes: Iterable[int], allow_empty: bool = False) -> list[int]:
    """The codes as a list of ints; raises SpeechCodeError naming the first bad one."""
    if isinstance(codes, (str, bytes)):
        raise SpeechCodeError("speech codes must be integers 0..6560, not text")
    try:
        arr = np.asarray(list(codes))
    except TypeError:
        raise SpeechCodeError(f"speech codes must be a sequence of integers, not {type(codes).__name__}") from None
    if arr.size == 0:
        if allow_empty:
            return []
        raise SpeechCodeError("no speech codes to voice (empty list)")
    if arr.ndim != 1:
        raise SpeechCodeError("speech codes must be a flat sequence of integers 0..6560")
    if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(np.mod(arr, 1) == 0):
        arr = arr.astype(np.int64)  # e.g. codes that went through JSON as floats
    if not np.issubdtype(arr.dtype, np.integer):
        raise SpeechCodeError("speech codes must be integers 0..6560")
    bad = np.flatnonzero((arr < 0) | (arr >= NUM_CODES))
    if bad.size:
        i = int(bad[0])
        raise SpeechCodeError(f"speech code {int(arr[i])} at position {i} is outside 0..{NUM_CODES - 1}")
    return [int(c) for c in arr]
