"""`stepvoice run TASKS.yaml`: expectations, exit status, transcript, wavs, clean errors for bad files."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf

from stepvoice.assistant.cli import main
from stepvoice.assistant.task_runner import matches
from stepvoice.assistant.tasks import load_tasks
from stepvoice.engine.errors import ConfigError

REPLIES = """
replies:
  # weather: a call, then the answer
  - tool_calls: [{name: get_date_time, arguments: {}}]
  - text: "It is Wednesday and sunny in Paris."
  # wrong-args: the model asks about Berlin
  - tool_calls: [{name: get_date_time, arguments: {location: Berlin}}]
  - text: "Done."
  # two turns
  - text: "Hello!"
  - text: "My name is Step."
  # spoken
  - text: "Nice to meet you."
    speech_codes: [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]
  # missing phrase
  - text: "I do not know."
"""

TASKS = """
model: replies.yaml
tasks:
  - name: weather
    turns: ["What day is it?"]
    expect:
      - tool: get_date_time
      - contains: sunny
  - name: wrong-args
    tools: [get_date_time]
    turns: ["What time is it in Paris?"]
    expect:
      - tool: get_date_time
        arguments: {location: paris}
  - name: two turns
    turns:
      - text: "Hi"
        expect: {contains: hello}
      - "What's your name?"
    expect: [{contains: step}, {not_contains: sorry}]
  - name: spoken
    reply: speech
    tools: false
    turns: ["Say hi"]
    expect: [{contains: meet}]
  - name: missing-phrase
    turns: ["Capital of Mars?"]
    expect: [{contains: Olympus}]
"""


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_five_tasks_report_pass_and_fail_and_set_the_exit_status(home, tmp_path, capsys, fake_checkpoint):
    (tmp_path / "replies.yaml").write_text(REPLIES)
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(TASKS)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'token2wav = "{fake_checkpoint / "token2wav"}"\n')
    out = tmp_path / "out"
    rc = main(["run", str(tasks), "--out", str(out), "--config", str(cfg), "--no-progress"])
    printed = capsys.readouterr().out.splitlines()
    assert rc == 1
    verdicts = {line.split()[1].rstrip(":"): line.split()[0] for line in printed if line.startswith(("PASS", "FAIL"))}
    assert verdicts == {"weather": "PASS", "wrong-args": "FAIL", "two": "PASS", "spoken": "PASS",
                        "missing-phrase": "FAIL"}
    assert printed[-1].startswith("3/5 task(s) passed")
    detail = "\n".join(printed)
    assert "get_date_time" in detail and '"location": "Berlin"' in detail  # says what was called instead
    assert "Olympus" in detail and f"{tasks}:" in detail  # and where the expectation is

    summary = json.loads((out / "summary.json").read_text())
    assert [t["passed"] for t in summary["tasks"]] == [True, False, True, True, False]
    lines = read_jsonl(out / "transcript.jsonl")
    kinds = [(r["task"], r["event"]) for r in lines]
    assert ("weather", "ToolCall") in kinds and ("weather", "ToolResult") in kinds
    assert sum(1 for r in lines if r["event"] == "turn_start") == 6
    assert sum(1 for r in lines if r["event"] == "task_end") == 5
    times = [r["t"] for r in lines if r["task"] == "weather" and "t" in r]
    assert times == sorted(times) and all(t >= 0 for t in times)
    # The spoken task wrote its wav with the real token2wav (fake weights), 25 codes -> ~1 s at 24 kHz.
    (spoken,) = [t for t in summary["tasks"] if t["name"] == "spoken"]
    assert spoken["wavs"] == ["spoken-01.wav"]
    pcm, sr = sf.read(out / "spoken-01.wav")
    assert sr == 24000 and abs(len(pcm) - 25 * 960) <= 2 * 960
    assert not list(out.glob("weather-*.wav"))  # text replies write no audio


def test_all_expectations_met_exits_zero(home, tmp_path, capsys):
    (tmp_path / "r.yaml").write_text("replies: ['Paris is the capital.', 'Berlin too.']\n")
    tasks = tmp_path / "t.yaml"
    tasks.write_text("model: r.yaml\ntasks:\n  - turns: ['Capital of France?', 'And Germany?']\n"
                     "    expect: [{contains: paris}, {contains: BERLIN}]\n")
    assert main(["run", str(tasks), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("1/1 task(s) passed")


def test_audio_turns_reach_the_model_as_audio(home, tmp_path, capsys, espeak_wav, monkeypatch):
    from stepvoice.engine.backends import scripted
    from stepvoice.engine.messages import Audio

    seen = []
    original = scripted.ScriptedBackend.generate

    def spy(self, messages, options, cancel=None):
        seen.append(messages)
        return original(self, messages, options, cancel)

    monkeypatch.setattr(scripted.ScriptedBackend, "generate", spy)
    wav = espeak_wav("What is the weather in Paris?")
    (tmp_path / "r.yaml").write_text("replies: ['It is sunny.']\n")
    tasks = tmp_path / "t.yaml"
    tasks.write_text(f"model: r.yaml\ntasks:\n  - name: spoken-question\n    turns:\n      - audio: {wav}\n"
                     "        text: Answer briefly.\n    expect: [{contains: sunny}]\n")
    assert main(["run", str(tasks), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    human = seen[0][-1]
    assert human.role == "human" and isinstance(human.content[0], Audio)
    assert abs(human.content[0].seconds - sf.info(wav).duration) < 0.05
    assert human.content[1].text == "Answer briefly."


def test_fake_checkpoint_drives_run_end_to_end(home, tmp_path, capsys, fake_checkpoint):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[generation]\nseed = 4\ntemperature = 1.0\nmax_new_tokens = 60\n")
    tasks = tmp_path / "t.yaml"
    tasks.write_text(f"model: {fake_checkpoint}\ntasks:\n  - name: local\n    reply: speech\n"
                     "    turns: [\"What's the weather in Paris?\"]\n")
    out = tmp_path / "o"
    assert main(["run", str(tasks), "--out", str(out), "--config", str(cfg), "--no-progress"]) == 0
    lines = read_jsonl(out / "transcript.jsonl")
    (end,) = [r for r in lines if r["event"] == "TurnEnd"]
    assert end["reason"] in ("stop", "length") and 0 < len(end["token_ids"]) <= 60
    codes = [c for r in lines if r["event"] == "SpeechCodes" for c in r["codes"]]
    assert codes, "seeded run of the fake model emits speech codes"
    # each turn reports the sampling that ran: [generation] over the official chat sampling
    # (top_p 0.9, penalty 1.05), top_k from transformers' defaults (the fake has no generation_config.json)
    (opts,) = [r["options"] for r in lines if r["event"] == "options"]
    assert opts == {"temperature": 1.0, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.05,
                    "max_new_tokens": 60, "seed": 4}
    pcm, sr = sf.read(out / "local-01.wav")
    assert sr == 24000 and len(pcm) > 0


@pytest.mark.parametrize("text, words", [
    ("tasks:\n  - turns: [hi\n", ":3:1: malformed YAML"),
    ("tasks:\n  - name: a\n\tturns: [hi]\n", ":3:1: malformed YAML"),
    ("tasks:\n  - name: a\n    turns: [hi]\n    colour: red\n", ":4:5: unknown key 'colour'"),
    ("tasks:\n  - name: a\n    turns: []\n", ":3:5: a task needs a non-empty 'turns' list"),
    ("tasks:\n  - turns: [{audio: nope.wav}]\n", ":2:14: audio file not found"),
    ("tasks:\n  - turns: [hi]\n    expect: [{tool: x, contains: y}]\n", ":3:14: an expectation has exactly one"),
    ("tasks:\n  - turns: [hi]\n    reply: loud\n", ":3:5: 'reply' must be text or speech"),
    ("tasks:\n  - {name: a, turns: [hi]}\n  - {name: a, turns: [ho]}\n", "two tasks are named 'a'"),
    ("", "empty"),
])
def test_malformed_task_files_fail_with_their_location(tmp_path, text, words):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_tasks(f)
    assert str(e.value).startswith(str(f)) and words in str(e.value) and "\n" not in str(e.value)


def test_malformed_file_through_the_cli_is_one_line(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("tasks:\n  - turns: [hi\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPVOICE_")}
    r = subprocess.run([sys.executable, "-m", "stepvoice", "run", str(f)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert f"{f}:3:1: malformed YAML" in r.stderr


def test_argument_matching_is_a_subset_match():
    assert matches({"location": "paris"}, {"location": "Paris ", "unit": "c"})
    assert not matches({"location": "paris"}, {"city": "Paris"})
    assert matches({"n": 3}, {"n": 3.0}) and not matches({"n": 3}, {"n": "3"})
    assert not matches({"flag": True}, {"flag": 1})
    assert matches({"tags": ["a", "B"]}, {"tags": ["A", "b"]}) and not matches({"tags": ["a"]}, {"tags": ["a", "b"]})
