"""`stepvoice chat` as a user runs it: from wav files (no sound device) with the scripted
engine and a fake token2wav; and the errors when there is no sound device."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_loop_support import espeak, silence

SCRIPT = """
replies:
  - text: "It is sunny."
    speech_codes: [{codes}]
"""


@pytest.fixture(scope="module")
def chat_env(tmp_path_factory):
    from stepvoice.engine.token2wav.fake import write_fake_token2wav

    root = tmp_path_factory.mktemp("chat")
    write_fake_token2wav(root / "t2w", size="tiny")
    (root / "home").mkdir()  # a HOME without .asoundrc: no sound device on this machine
    (root / "s.yaml").write_text(SCRIPT.format(codes=", ".join(str(c) for c in range(1, 26))))
    env = dict(os.environ, HOME=str(root / "home"), STEPVOICE_HOME=str(root / "data"),
               STEPVOICE_TOKEN2WAV=str(root / "t2w"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("STEPVOICE_CONFIG", None)
    return root, env


def stepvoice(env, root, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "stepvoice", "chat", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(150)
def test_chat_from_a_file_speaks_traces_and_saves_the_conversation(chat_env):
    root, env = chat_env
    sf.write(root / "q.wav", np.concatenate([silence(0.3), espeak("What is the weather like in Paris?")]), 16000)
    r = stepvoice(env, root, "--model", "scripted:s.yaml", "--input-file", "q.wav", "--record", "out.wav",
                  "--trace", "--silence-ms", "400", "--no-tools")
    assert r.returncode == 0, r.stderr
    assert "assistant: It is sunny." in r.stdout
    assert r.stdout.index("you: [speech, ") < r.stdout.index("assistant: It is sunny.")  # each turn as it happens
    assert "[trace] turn 1: hangover 416 ms -> first token" in r.stdout  # 400 ms rounded up to 13 frames
    # the speaker got the spoken reply: 25 codes = 1 s of 24 kHz audio from the fake token2wav
    out, sr = sf.read(root / "out.wav")
    loud = np.flatnonzero(np.abs(out) > 0.01)
    assert sr == 24000 and loud.size and (loud[-1] - loud[0]) / sr == pytest.approx(1.0, abs=0.05)
    # conversation saved (the user's audio and the spoken reply with its codes), trace logged
    saved = Path(r.stderr.split("conversation saved to ")[1].split()[0])
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["human", "assistant"]
    assert messages[0]["content"][0]["type"] == "audio" and messages[0]["content"][0]["seconds"] > 1.0
    assert messages[1]["content"][0]["codes"] == list(range(1, 26))
    logs = list((root / "data" / "logs").glob("chat-*.jsonl"))
    turns = [json.loads(x) for f in logs for x in f.read_text().splitlines() if '"turn"' in x]
    assert turns and turns[-1]["complete"] and turns[-1]["played_s"] == pytest.approx(1.0, abs=0.05)


def test_no_sound_device_is_one_clear_line(chat_env):
    root, env = chat_env
    r = stepvoice(env, root, "--model", "scripted:s.yaml", timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: no input device found: connect a microphone or check the sound system (stepvoice chat --list-devices); "
        "without a microphone, type with `stepvoice chat --text` or play wav files with `--input-file FILE.wav`"]
    r = stepvoice(env, root, "--list-devices", timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "no sound devices found"


def test_bad_flags_are_clear(chat_env):
    root, env = chat_env
    r = stepvoice(env, root, "--model", "scripted:s.yaml", "--record", "x.wav", timeout=60)
    assert r.returncode == 1 and "--record works with --input-file" in r.stderr
    r = stepvoice(env, root, "--model", "scripted:s.yaml", "--input-file", "missing.wav", timeout=60)
    assert r.returncode == 1 and "missing.wav" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = stepvoice(env, root, "--model", "scripted:s.yaml", "--input-file", "q.wav", "--vad-threshold", "2",
                  timeout=60)
    assert r.returncode == 1 and "threshold" in r.stderr
