"""Conformance: the default voice is a female speaker, as the official code's default voice is.

Official rules (stepfun-ai/Step-Audio2 at 7c58630):
- examples.py line 104: the tool-calling system prompt ends "请用默认女声与用户交流"
  ("talk with the user in the default female voice");
- examples.py lines 45, 87, 112, 128, 143: spoken replies are rendered with
  `prompt_wav='assets/default_female.wav'`.
That file is not on any package index, so stepvoice's default is the female clip
shipped in the s3tokenizer wheel (voice_bank/starter.py); this checks it is female
by its pitch, and that `voices list` marks it.
"""
from __future__ import annotations

import json

import numpy as np

from stepvoice.assistant.cli import main
from stepvoice.engine.audio import load_audio
from stepvoice.voice_bank.starter import default_clip, starter_voices
from stepvoice.voice_bank.voice import DEFAULT_VOICE

FEMALE_MIN_F0_HZ = 165.0  # adult male speech is mostly 85-155 Hz, female 165-255 Hz


def median_f0(x: np.ndarray, sr: int = 16000) -> float:
    """Median pitch of the voiced 40 ms frames (autocorrelation peak between 60 and 400 Hz)."""
    x = x / (np.abs(x).max() + 1e-9)
    frame, hop, found = 640, 160, []
    lo, hi = sr // 400, sr // 60
    for i in range(0, len(x) - frame, hop):
        w = x[i:i + frame] - x[i:i + frame].mean()
        if np.sqrt(np.mean(w ** 2)) < 0.02:
            continue  # silence
        ac = np.correlate(w, w, "full")[frame - 1:]
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.4 * ac[0]:  # voiced
            found.append(sr / k)
    assert len(found) > 50, "too few voiced frames to measure"
    return float(np.median(found))


def test_median_f0_tells_a_low_voice_from_a_high_one():
    sr = 16000
    t = np.arange(sr) / sr
    low = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)  # a 110 Hz buzz (male-like)
    high = np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert abs(median_f0(low) - 110) < 5 and abs(median_f0(high) - 220) < 10


def test_the_default_voice_is_female():
    first = starter_voices()[0]
    assert first.name == DEFAULT_VOICE and "female" in first.tags
    f0 = median_f0(load_audio(default_clip()))
    assert f0 > FEMALE_MIN_F0_HZ, f"default voice median pitch {f0:.0f} Hz is not in the female range"
    assert f0 == median_f0(first.load())  # the bank's default is that same clip


def test_voices_list_marks_the_default(home, capsys):
    assert main(["voices", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    marked = [line for line in out if line.startswith("* ") and not line.startswith("* default voice")]
    assert len(marked) == 1 and marked[0].split()[1] == DEFAULT_VOICE
    assert out[-1] == f"* default voice (speaks when no voice is chosen): {DEFAULT_VOICE}"
    assert main(["voices", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in listed if v["default"]] == [DEFAULT_VOICE]
