"""The first five minutes: `ask` streams (and reads stdin), `chat --text` holds a typed conversation
from piped input, `serve` runs without a speaker encoder, and no-microphone errors say what to do."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORDS = "one two three four five six seven eight nine ten"
HIDE = Path(__file__).parent / "fixtures" / "hide_modules"  # sitecustomize: HIDE_MODULES act as not installed


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPVOICE_")}
    env.update({"STEPVOICE_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                "STEPVOICE_TEXT_EMBEDDER": "hash", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "stepvoice", *argv]


def test_ask_writes_first_text_before_generation_ends(tmp_path):
    script = tmp_path / "s.yaml"
    script.write_text(f"replies:\n  - text: {WORDS}\n    delay_ms: 250\n")  # ten pieces, 2.5 s in all
    proc = subprocess.Popen(cli("ask", "--model", f"scripted:{script}", "--text", "count", "--no-tools"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(tmp_path))
    try:
        first = os.read(proc.stdout.fileno(), 4096).decode()  # blocks until the child writes something
        running = proc.poll() is None
        rest = proc.stdout.read().decode()
        proc.wait(60)
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert first and WORDS.startswith(first) and len(first) < len(WORDS)  # a piece, not the whole answer
    assert running  # the first words came while the engine was still generating
    assert (first + rest) == WORDS + "\n"


def test_ask_no_stream_and_question_from_stdin(tmp_path, home, monkeypatch, capsys):
    import io

    from stepvoice.assistant.cli import main

    script = tmp_path / "s.yaml"
    script.write_text(f"replies:\n  - text: {WORDS}\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("count\n"))
    assert main(["ask", "--model", f"scripted:{script}", "--no-tools", "--no-stream"]) == 0
    assert capsys.readouterr().out == WORDS + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["ask", "--model", f"scripted:{script}"]) == 1
    err = capsys.readouterr().err
    assert "stdin" in err and err.count("\n") == 1


def test_ask_fake_checkpoint_reads_the_question_from_stdin(fake_checkpoint, tmp_path):
    from stepvoice.engine.tokenizer import load_tokenizer

    question = "What is the capital of France?"
    out = subprocess.run(cli("ask", "--model", str(fake_checkpoint), "--json", "--no-tools", "--max-new-tokens", "4",
                             "--seed", "1"), input=question, capture_output=True, text=True, env=cli_env(tmp_path),
                         timeout=300)
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout)["prompt_token_ids"]
    asked = load_tokenizer(fake_checkpoint).encode(question)
    assert any(ids[i:i + len(asked)] == asked for i in range(len(ids)))


SCRIPT_3 = """
replies:
  - text: Hello, I am here.
  - text: Let me check the time.
    tool_calls: [{name: get_date_time}]
  - text: It is late.
  - text: You asked about the time before.
"""


def test_chat_text_with_piped_stdin_holds_three_turns(tmp_path):
    script = tmp_path / "s.yaml"
    script.write_text(SCRIPT_3)
    lines = "hello\nwhat time is it?\n/style cheerful\n/voice\nand before?\n/quit\nnever read\n"
    out = subprocess.run(cli("chat", "--text", "--model", f"scripted:{script}"), input=lines, capture_output=True,
                         text=True, env=cli_env(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stdout.splitlines() if line.startswith(("you:", "assistant:", "["))]
    assert said == [
        "you: hello", "assistant: Hello, I am here.",
        "you: what time is it?", "assistant: Let me check the time.", "[get_date_time({}): ok]",
        "assistant: It is late.",
        "you: /style cheerful", "[style: cheerful]",
        "you: /voice", "[voice: default]",
        "you: and before?", "assistant: You asked about the time before.",
        "you: /quit",
    ]
    saved = Path(out.stderr.split("conversation saved to ")[1].strip())
    history = json.loads(saved.read_text())
    text = json.dumps(history, ensure_ascii=False)
    assert text.count("hello") == 1 and "what time is it?" in text and "and before?" in text


def test_chat_text_fake_checkpoint_three_turns_and_reset(fake_checkpoint, tmp_path):
    lines = "hi\nhow are you?\n/reset\nbye\n"
    out = subprocess.run(cli("chat", "--text", "--model", str(fake_checkpoint), "--no-tools",
                             "--config", str(_config(tmp_path, "[generation]\nmax_new_tokens = 6\nseed = 3\n"))),
                         input=lines, capture_output=True, text=True, env=cli_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "[conversation cleared]" in out.stdout and out.stdout.count("you: ") == 4
    saved = Path(out.stderr.split("conversation saved to ")[1].strip())
    text = saved.read_text()
    assert "bye" in text and "how are you?" not in text  # /reset dropped the first two turns


def _config(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "c.toml"
    f.write_text(text)
    return f


def test_no_microphone_error_names_the_ways_without_one(tmp_path):
    out = subprocess.run(cli("chat", "--model", "scripted:none.yaml", "--input-device", "no-such-mic-xyz"),
                         capture_output=True, text=True, env=cli_env(tmp_path), timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "--text" in out.stderr and "--input-file" in out.stderr


def test_serve_starts_and_answers_without_a_speaker_encoder(tmp_path):
    import asyncio

    from server_support import text_turn

    from stepvoice.assistant.server.launch import spawn_server
    from stepvoice.engine.token2wav.fake import write_fake_token2wav

    (tmp_path / "s.yaml").write_text("replies:\n  - text: Hello from a server with no speaker encoder.\n")
    write_fake_token2wav(tmp_path / "token2wav", "tiny")
    env = cli_env(tmp_path, PYTHONPATH=str(HIDE), HIDE_MODULES="resemblyzer")
    env.pop("STEPVOICE_TEXT_EMBEDDER")
    proc, port = spawn_server(["--model", f"scripted:{tmp_path / 's.yaml'}", "--token2wav",
                               str(tmp_path / "token2wav")], env, tmp_path / "server.log")
    try:
        assert asyncio.run(text_turn(port))[0] == "Hello from a server with no speaker encoder."
    finally:
        proc.terminate()
        proc.wait(20)
    assert "no speaker encoder" in (tmp_path / "server.log").read_text()  # said once, as a warning


def test_hidden_module_fixture_hides(tmp_path):
    """The serve test above relies on this: with HIDE_MODULES the package is 'not installed'."""
    code = "import importlib.util; print(importlib.util.find_spec('resemblyzer') is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(tmp_path, PYTHONPATH=str(HIDE), HIDE_MODULES="resemblyzer"), timeout=60)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("argv", [["--version"], ["--debug", "--version"]])
def test_version(argv):
    out = subprocess.run(cli(*argv), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("stepvoice ")


def test_text_chat_speaks_each_reply_as_it_streams(fake_token2wav, home):
    """`chat --text --speak`: the reply's audio reaches the speaker chunk by chunk, then it is drained;
    /voice NAME is refused without --speak (the fake speaker stands in for PortAudio)."""
    import asyncio
    import io

    import numpy as np

    from stepvoice.assistant.cli.text_chat import TextChat
    from stepvoice.assistant.session import Session
    from stepvoice.engine.backends.scripted import ScriptedBackend
    from stepvoice.engine.token2wav import Token2Wav

    class FakeSpeaker:
        def __init__(self):
            self.chunks, self.drained = [], 0

        def play(self, pcm, rate):
            assert rate == 24000
            self.chunks.append(np.asarray(pcm))

        def drain(self):
            self.drained += 1

    codes = list(range(300, 350))
    backend = ScriptedBackend.from_data({"replies": [{"text": "Spoken hello.", "speech_codes": codes}]})
    session = Session(backend, token2wav=Token2Wav.from_dir(fake_token2wav))
    lines = iter(["hello", None])
    speaker, out = FakeSpeaker(), io.StringIO()
    asyncio.run(TextChat(session, lambda: next(lines), out=out, speaker=speaker).run())
    assert "assistant: Spoken hello." in out.getvalue()
    assert len(speaker.chunks) >= 2 and speaker.drained == 1  # streamed in pieces, then waited for
    assert sum(c.size for c in speaker.chunks) == len(codes) * 960
    quiet = io.StringIO()
    lines = iter(["/voice deep", None])
    asyncio.run(TextChat(session, lambda: next(lines), out=quiet).run())
    assert "start the chat with --speak" in quiet.getvalue()


def test_text_chat_style_and_reset_reach_the_next_request(home):
    import asyncio
    import io

    from stepvoice.assistant.cli.text_chat import TextChat
    from stepvoice.assistant.session import Session
    from stepvoice.assistant.style import style_line
    from stepvoice.engine.backends.scripted import ScriptedBackend

    backend = ScriptedBackend.from_data({"replies": ["One.", "Two.", "Three."]})
    session = Session(backend)
    lines = iter(["first", "/style whisper", "second", "/reset", "/style", "third", None])
    out = io.StringIO()
    asyncio.run(TextChat(session, lambda: next(lines), out=out).run())
    systems = [msgs[0].content[0].text for msgs, _ in backend.requests]
    line = style_line("whisper", session.config.language)
    assert line not in systems[0] and line in systems[1] and line not in systems[2]
    humans = [[m for m in msgs if m.role == "human"] for msgs, _ in backend.requests]
    assert [len(h) for h in humans] == [1, 2, 1]  # /reset started the third request afresh
    assert "[style: whisper]" in out.getvalue() and "[conversation cleared]" in out.getvalue()
