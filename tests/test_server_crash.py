"""kill -9 of `stepvoice serve` at random points (while it installs the starter voices
on first start, while a turn switches the voice and caches its prompt): a restart
finds the voice bank and its index intact, nothing committed lost, and serves a
normal turn. (Index ingestion under kill -9: test_retrieval_crash.py.)"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from server_support import text_turn

from stepvoice.assistant.server.launch import spawn_server

SCRIPT = """
replies:
  - text: Switching the voice.
    tool_calls: [{name: timbre_rag, arguments: {query: a deep calm male voice}}]
  - text: Now I speak with the new voice.
    speech_codes: [10, 20, 30, 40, 50, 60, 70, 80]
  - text: Hello again.
    speech_codes: [11, 21, 31, 41]
"""


def bank_state(home: Path) -> dict[str, set[str]]:
    """Every voice folder complete and loadable, every cached prompt loadable, the index sound."""
    from stepvoice.engine.token2wav import VoicePrompt
    from stepvoice.voice_bank import VoiceBank

    voices_dir = next((p for p in home.rglob("voice.json")), None)
    if voices_dir is None:
        return {}
    state: dict[str, set[str]] = {}
    for db in home.rglob("*.sqlite"):
        con = sqlite3.connect(str(db))
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
        finally:
            con.close()
    for prompt in home.rglob("prompt-*.npz"):
        VoicePrompt.load(prompt)  # a half-written cache would raise here
    with VoiceBank.open(home) as bank:  # reconciles the index with the folders
        for voice in bank.list():
            assert voice.clip.is_file() and voice.clip.stat().st_size > 0, voice.name
            state[voice.name] = {p.name for p in voice.clip.parent.glob("prompt-*.npz")}
    return state


@pytest.mark.slow  # five server starts: ~1 min on 2 cores
def test_kill_9_during_serve_loses_nothing_committed(tmp_path):
    from stepvoice.engine.token2wav.fake import write_fake_token2wav

    (tmp_path / "script.yaml").write_text(SCRIPT)
    write_fake_token2wav(tmp_path / "token2wav", "tiny")
    home = tmp_path / "home"
    env = {**os.environ, "STEPVOICE_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("STEPVOICE_TOKEN", None)
    args = ["--model", f"scripted:{tmp_path / 'script.yaml'}", "--token2wav", str(tmp_path / "token2wav")]
    rng = random.Random(7)
    seen: dict[str, set[str]] = {}
    kills = 0
    for attempt in range(4):
        proc, port = spawn_server(args, env, tmp_path / f"server{attempt}.log")
        try:
            if attempt % 2:  # mid-turn: the voice switch prepares and caches the new voice's prompt
                async def turn_then_kill():
                    task = asyncio.create_task(text_turn(port, "speak in a deep voice", modalities=None))
                    await asyncio.sleep(rng.uniform(0.05, 0.6))
                    proc.send_signal(signal.SIGKILL)
                    try:
                        await asyncio.wait_for(task, 20)
                    except Exception:
                        pass  # the connection dies with the server: expected

                asyncio.run(turn_then_kill())
            else:  # soon after start: the first start installs the starter bank
                time.sleep(rng.uniform(0.0, 0.3))
                proc.send_signal(signal.SIGKILL)
            kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(20)
        state = bank_state(home)
        for name, prompts in seen.items():  # nothing committed before a kill is lost by a later one
            assert name in state and prompts <= state[name], (name, state)
        seen = state
    assert kills == 4
    # a clean start after all that serves a normal spoken turn and a voice switch
    proc, port = spawn_server(args, env, tmp_path / "server-final.log")
    try:
        _, events = asyncio.run(text_turn(port, "speak in a deep voice", modalities=None))  # an error fails here
        assert any(e["type"] == "response.output_audio.delta" for e in events)
    finally:
        proc.terminate()
        proc.wait(20)
    final = bank_state(home)
    assert final and all(name in final for name in seen)
    assert any(final.values()), "the voice switch cached no prompt: the write path was not exercised"
