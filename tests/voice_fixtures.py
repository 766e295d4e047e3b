"""espeak-ng "speakers" for voice bank tests: two sentences per voice, 16 kHz mono (built at test time)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

# name -> (espeak voice, speed, pitch, description written for the test bank)
ESPEAK_VOICES = {
    "bright_girl": ("en+f4", 180, 85, "A high-pitched, fast and bright young girl voice, cheerful"),
    "deep_man": ("en-us+m7", 140, 20, "A deep, low-pitched, slow and calm adult male voice"),
    "german_man": ("de+m2", 150, 40, "A steady male voice with a German accent"),
    "british_lady": ("en-gb+f2", 160, 60, "一位带英国口音的女士，声音温柔优雅"),
    "fast_man": ("en-us+m1", 170, 30, "语速很快、声音低沉有力的年轻男性"),
    "soft_woman": ("en-us+f3", 150, 70, "一个甜美、柔和、音调偏高的女性声音"),
    "old_man": ("en+m3", 130, 50, "一位说话缓慢、声音沙哑的老年男性"),
}
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Please remember to bring your umbrella because it might rain this afternoon.",
)


def speak(out: Path, text: str, voice: str, speed: int, pitch: int) -> Path:
    raw = out.with_name(out.stem + ".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text], check=True)
    subprocess.run(["sox", "-V1", str(raw), "-r", "16000", "-c", "1", str(out)], check=True)
    raw.unlink()
    return out


@pytest.fixture(scope="session")
def espeak_clips(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (clip of sentence 1, clip of sentence 2), same voice settings."""
    root = tmp_path_factory.mktemp("espeak")
    clips = {}
    for name, (voice, speed, pitch, _) in ESPEAK_VOICES.items():
        clips[name] = tuple(speak(root / f"{name}_{i}.wav", s, voice, speed, pitch) for i, s in enumerate(SENTENCES))
    return clips
