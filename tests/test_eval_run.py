"""`stepvoice eval` end to end on small sets made here (espeak-ng speech with known text).

The scripted engine plays one reply per item in dataset order; a deterministic
backend keyed on the audio drives the interrupt/resume test.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from stepvoice.assistant.cli import main
from stepvoice.assistant.presets import preset

EN = [  # (utterance id, reference as LibriSpeech writes it, scripted reply)
    ("1089-134686-0000", "HE HOPED THERE WOULD BE STEW FOR DINNER", "He hoped there would be stew for dinner."),
    ("1089-134686-0001", "TURNIPS AND CARROTS AND BRUISED POTATOES", "Turnips and carrots and bruised tomatoes."),
    ("1089-134686-0002", "TWENTY ONE PEOPLE CAME", "21 people came!"),
]


def _flac(src: Path, dst: Path) -> None:
    data, sr = sf.read(str(src), dtype="float32")
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), data, sr, format="FLAC")


def librispeech(root: Path, espeak_wav) -> Path:
    """A LibriSpeech-layout test-clean folder: SPEAKER/CHAPTER/*.trans.txt beside ID.flac."""
    chapter = root / "LibriSpeech" / "test-clean" / "1089" / "134686"
    for utt, ref, _ in EN:
        _flac(espeak_wav(ref.lower()), chapter / f"{utt}.flac")
    (chapter / "1089-134686.trans.txt").write_text("".join(f"{u} {r}\n" for u, r, _ in EN), encoding="utf-8")
    return root / "LibriSpeech" / "test-clean"


def script(path: Path, replies: list) -> str:
    path.write_text(yaml.safe_dump({"replies": replies}, allow_unicode=True), encoding="utf-8")
    return f"scripted:{path}"


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_eval_asr_librispeech_scripted_exact_wer(tmp_path, espeak_wav, home, capsys):
    data = librispeech(tmp_path / "data", espeak_wav)
    model = script(tmp_path / "s.yaml", [reply for _, _, reply in EN])
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["eval", "asr", str(data), "--model", model, "--out", str(out)], capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    # 8 + 6 + 3 reference words; one substitution (tomatoes); "21" = "TWENTY ONE" after normalisation.
    assert summary["metric"] == "wer" and summary["n"] == 3
    assert summary["value"] == pytest.approx(100 * 1 / 17, abs=1e-4)
    assert summary["metrics"]["substitutions"] == 1 and summary["metrics"]["reference"] == 17
    assert summary["published"]["value"] == 1.33 and "stepfun-ai/Step-Audio2" in summary["published"]["source"]
    assert summary["options"]["temperature"] == preset("asr").temperature  # the preset's sampling was used
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [u for u, _, _ in EN]
    assert rows[1]["score"] == {"substitutions": 1, "deletions": 0, "insertions": 0, "reference": 6}
    assert all(r["latency_s"] >= 0 and "hypothesis" in r for r in rows)
    assert "5.88" in stdout and "1.33" in stdout  # the printed table, beside the published figure


def test_eval_prompts_come_from_the_presets(tmp_path, espeak_wav):
    from stepvoice.assistant.config import AssistantConfig
    from stepvoice.assistant.eval.loaders_asr import load_librispeech
    from stepvoice.assistant.eval.runner import EvalRun, run_eval
    from stepvoice.engine.backends.scripted import ScriptedBackend
    from stepvoice.engine.messages import Audio

    data = librispeech(tmp_path / "data", espeak_wav)
    backend = ScriptedBackend.from_data([r for _, _, r in EN])
    run = EvalRun("asr", load_librispeech(data), str(data), "scripted", tmp_path / "out", limit=1)
    result = asyncio.run(run_eval(run, backend, AssistantConfig()))
    assert result["n"] == 1
    messages, options = backend.requests[0]
    assert messages[0].role == "system" and messages[0].plain_text == preset("asr").system_prompt
    assert messages[-1].role == "human" and isinstance(messages[-1].content[0], Audio)
    assert options.temperature == preset("asr").temperature


def test_eval_asr_aishell_cer(tmp_path, espeak_wav, home, capsys):
    root = tmp_path / "data_aishell"
    refs = {"BAC009S0764W0121": "今天天气很好", "BAC009S0764W0122": "我们去公园散步"}
    for utt, text in refs.items():
        wav = root / "wav" / "test" / "S0764" / f"{utt}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav.write_bytes(Path(espeak_wav(text, voice="cmn")).read_bytes())
    (root / "transcript").mkdir()
    (root / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "".join(f"{u} {' '.join(t)}\n" for u, t in refs.items()), encoding="utf-8")
    # Full-width punctuation is not an error; 天汽 is one substitution in 13 characters.
    model = script(tmp_path / "s.yaml", ["今天天汽很好。", "我们去公园散步！"])
    rc, stdout, err = run_cli(["eval", "asr", str(root), "--model", model, "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["metric"] == "cer" and summary["dataset_key"] == "aishell"
    assert summary["value"] == pytest.approx(100 / 13, abs=1e-4)
    assert summary["published"]["value"] == 0.78


def toolcall_set(root: Path, espeak_wav) -> Path:
    """StepEval-Audio-Toolcall layout: FAMILY_positive/negative.jsonl + wav/."""
    root.mkdir(parents=True)
    (root / "wav").mkdir()

    def wav(name: str, text: str) -> str:
        (root / "wav" / name).write_bytes(Path(espeak_wav(text)).read_bytes())
        return f"wav/{name}"

    def line(turns, expected):
        return json.dumps({"turns": turns, "expected": expected}, ensure_ascii=False) + "\n"

    weather = lambda city: {"name": "get_weather", "arguments": {"location": city}}  # noqa: E731
    pos = [
        line([{"role": "human", "audio": wav("p0.wav", "what is the weather in Paris")}], weather("Paris")),
        line([{"role": "human", "audio": wav("p1.wav", "is it raining in Berlin")}], weather("Berlin")),
        line([{"role": "human", "audio": wav("p2a.wav", "I am going to Rome")},
              {"role": "assistant", "text": "Have a nice trip!"},
              {"role": "human", "audio": wav("p2b.wav", "how warm will it be there")}], weather("Rome")),
    ]
    neg = [
        line([{"role": "human", "audio": wav("n0.wav", "tell me a joke")}], None),
        line([{"role": "human", "audio": wav("n1.wav", "what is a cloud")}], None),
    ]
    (root / "get_weather_positive.jsonl").write_text("".join(pos), encoding="utf-8")
    (root / "get_weather_negative.jsonl").write_text("".join(neg), encoding="utf-8")
    return root


def test_eval_toolcall_scripted_precision_recall(tmp_path, espeak_wav, home, capsys):
    data = toolcall_set(tmp_path / "toolcall", espeak_wav)
    call = lambda city: {"tool_calls": [{"name": "get_weather", "arguments": {"location": city}}]}  # noqa: E731
    # Items in order: negatives (n0, n1), then positives (p0, p1, p2).
    model = script(tmp_path / "s.yaml", [
        "Why did the cloud stay home? It was feeling under the weather.",  # n0: rightly no call
        "A cloud is water droplets in the air.",  # n1: rightly no call
        call("paris"),  # p0: right (case is not an error)
        "I cannot tell.",  # p1: missed
        call("Milan"),  # p2: wrong parameter
    ])
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["eval", "toolcall", str(data), "--model", model, "--out", str(out)], capsys)
    assert rc == 0, err
    s = json.loads((out / "summary.json").read_text())
    m = s["metrics"]
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 1)
    assert m["trigger_precision"] == pytest.approx(100.0)
    assert m["trigger_recall"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert m["type_accuracy"] == pytest.approx(100.0)
    assert m["parameter_accuracy"] == pytest.approx(50.0)
    assert m["trigger_recall/get_weather"] == m["trigger_recall"]
    assert any(r["metric"] == "trigger_recall/get_weather" and r["published"] == 100.0 for r in s["table"])
    assert s["published_model"].startswith("Step-Audio 2 (full") and "Step-Audio 2 (full" in stdout
    rows = {json.loads(x)["id"]: json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()}
    assert rows["get_weather_positive-2"]["tool_calls"] == [{"name": "get_weather", "arguments": {"location": "Milan"}}]


def test_eval_toolcall_declares_tools_and_keeps_history(tmp_path, espeak_wav, home):
    from stepvoice.assistant.config import load_config
    from stepvoice.assistant.eval.loaders_bench import load_toolcall
    from stepvoice.assistant.eval.runner import EvalRun, run_eval
    from stepvoice.engine.backends.scripted import ScriptedBackend

    data = toolcall_set(tmp_path / "toolcall", espeak_wav)
    backend = ScriptedBackend.from_data([{"tool_calls": [{"name": "get_weather", "arguments": {"location": "x"}}]}] * 5)
    cfg = load_config(None, {"tool_loop.max_rounds": 0, "rag.mode": "off"})
    run = EvalRun("toolcall", load_toolcall(data), str(data), "scripted", tmp_path / "out")
    asyncio.run(run_eval(run, backend, cfg))
    assert len(backend.requests) == 5  # tool calls were recorded, never answered with a second round
    messages, _ = backend.requests[-1]  # p2: a conversation of three turns
    roles = [m.role for m in messages]
    assert roles[:2] == ["system", "tool_json_schemas"] and roles[2:] == ["human", "assistant", "human"]
    declared = {t["function"]["name"] for t in json.loads(messages[1].plain_text)}
    assert declared == {"search", "get_weather", "get_date_time", "timbre_rag"}


class AudioKeyedBackend:
    """Answers by the length of the audio it hears (a fixed table): order-independent, so a resumed run
    in a new process or a new backend sees the same replies."""

    name = "audio-keyed"

    def __init__(self, replies: dict[int, str], stop_after: int | None = None):
        self.replies, self.stop_after, self.calls = replies, stop_after, 0

    async def generate(self, messages, options, cancel=None):
        from stepvoice.engine.events import TextDelta, TurnEnd, Usage
        from stepvoice.engine.messages import Audio

        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of the run
        audio = next(p for p in messages[-1].content if isinstance(p, Audio))
        yield TextDelta(self.replies[len(audio.samples)])
        yield TurnEnd("stop", Usage(completion_tokens=3, elapsed_s=0.01))


def test_interrupted_and_resumed_run_gives_the_uninterrupted_summary(tmp_path, espeak_wav):
    from stepvoice.assistant.config import AssistantConfig
    from stepvoice.assistant.eval.loaders_asr import load_librispeech
    from stepvoice.assistant.eval.runner import RESULTS, EvalRun, run_eval
    from stepvoice.engine.audio import load_audio

    data = librispeech(tmp_path / "data", espeak_wav)
    dataset = load_librispeech(data)
    replies = {len(load_audio(i.audio[0])): reply for i, (_, _, reply) in zip(dataset.items, EN)}
    cfg = AssistantConfig()

    whole = asyncio.run(run_eval(EvalRun("asr", dataset, str(data), "m", tmp_path / "a"), AudioKeyedBackend(replies), cfg))

    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run_eval(EvalRun("asr", dataset, str(data), "m", out), AudioKeyedBackend(replies, stop_after=2), cfg))
    assert len((out / RESULTS).read_text().splitlines()) == 2
    with (out / RESULTS).open("a") as f:
        f.write('{"id": "1089-134686-0002", "hyp')  # a line torn by the kill: ignored, the item is redone
    backend = AudioKeyedBackend(replies)
    resumed = asyncio.run(run_eval(EvalRun("asr", dataset, str(data), "m", out), backend, cfg))
    assert backend.calls == 1  # only the unfinished item ran again
    assert resumed["metrics"] == whole["metrics"] and resumed["n"] == whole["n"] == 3
    assert resumed["metrics"]["wer"] == pytest.approx(100 / 17, abs=1e-4)


def test_resume_refuses_a_folder_of_another_run(tmp_path, espeak_wav, home, capsys):
    data = librispeech(tmp_path / "data", espeak_wav)
    out = tmp_path / "run"
    model = script(tmp_path / "s.yaml", [r for _, _, r in EN])
    assert run_cli(["eval", "asr", str(data), "--model", model, "--out", str(out), "--limit", "1"], capsys)[0] == 0
    other = script(tmp_path / "t.yaml", [r for _, _, r in EN])
    rc, _, err = run_cli(["eval", "asr", str(data), "--model", other, "--out", str(out)], capsys)
    assert rc == 1 and "holds another run" in err and len(err.strip().splitlines()) == 1


def test_eval_s2tt_covost_bleu_with_zh_tokenizer(tmp_path, espeak_wav, home, capsys):
    root = tmp_path / "covost"
    (root / "clips").mkdir(parents=True)
    (root / "clips" / "a.mp3").write_bytes(Path(espeak_wav("I love Beijing")).read_bytes())  # read by content
    (root / "covost_v2.en_zh-CN.tsv").write_text(
        "path\tsentence\ttranslation\tclient_id\tsplit\n"
        "a.mp3\tI love Beijing Tiananmen\t我爱北京天安门\tc1\ttest\n"
        "b.mp3\tnot in test\t不在测试集\tc2\ttrain\n", encoding="utf-8")
    model = script(tmp_path / "s.yaml", ["我爱北京"])
    rc, stdout, err = run_cli(["eval", "s2tt", str(root), "--model", model, "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    import math

    assert s["n"] == 1 and s["dataset_key"] == "covost2-en-zh" and s["published"]["value"] == 49.12
    assert s["value"] == pytest.approx(100 * math.exp(1 - 7 / 4), abs=1e-3)  # chars: 4 of 7, all n-grams right
    assert "tok:zh" in s["metrics"]["bleu_signature"]


def test_eval_mmau_and_compare_plot(tmp_path, espeak_wav, home, capsys):
    root = tmp_path / "mmau"
    (root / "test-mini-audios").mkdir(parents=True)
    rows = []
    for k, (task, answer) in enumerate([("sound", "Dog barking"), ("music", "Rock music"), ("music", "Jazz")]):
        (root / "test-mini-audios" / f"{k}.wav").write_bytes(Path(espeak_wav(f"clip {k}")).read_bytes())
        rows.append({"id": f"q{k}", "audio_id": f"./test-mini-audios/{k}.wav", "question": "What is heard?",
                     "choices": ["Dog barking", "Rock music", "Jazz", "Speech"], "answer": answer, "task": task})
    (root / "mmau-test-mini.json").write_text(json.dumps(rows), encoding="utf-8")
    runs = []
    for name, replies in [("r1", ["A", "It sounds like rock music.", "Speech"]), ("r2", ["A", "B", "C"])]:
        model = script(tmp_path / f"{name}.yaml", replies)
        rc, _, err = run_cli(["eval", "mmau", str(root), "--model", model, "--out", str(tmp_path / name)], capsys)
        assert rc == 0, err
        runs.append(tmp_path / name)
    s1 = json.loads((runs[0] / "summary.json").read_text())
    assert s1["value"] == pytest.approx(200 / 3, abs=1e-3)
    assert s1["metrics"]["accuracy/sound"] == 100.0 and s1["metrics"]["accuracy/music"] == 50.0
    assert s1["published"]["value"] == 73.2
    messages_text = json.loads((runs[0] / "results.jsonl").read_text().splitlines()[0])
    assert messages_text["score"]["picked"] == "Dog barking"
    png = tmp_path / "summary.png"
    rc, stdout, err = run_cli(["eval", "compare", str(runs[0]), str(runs[1]), "--plot", str(png)], capsys)
    assert rc == 0, err
    assert "66.67" in stdout and "100.00" in stdout and "published 73.20" in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_eval_paralinguistic_accuracy_per_dimension(tmp_path, espeak_wav, home, capsys):
    root = tmp_path / "para"
    root.mkdir()
    items = [("gender", "男性", "说话人是一位男性。"), ("gender", "女性", "说话人是男性。"), ("speed", "快", "语速很快")]
    lines = []
    for k, (task, label, _) in enumerate(items):
        (root / f"{k}.wav").write_bytes(Path(espeak_wav(f"sample {k}")).read_bytes())
        lines.append(json.dumps({"id": f"p{k}", "audio": f"{k}.wav", "answer": label, "task": task}, ensure_ascii=False))
    (root / "paralinguistic.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = script(tmp_path / "s.yaml", [r for _, _, r in items])
    rc, _, err = run_cli(["eval", "paralinguistic", str(root), "--model", model, "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["metrics"]["accuracy/gender"] == 50.0 and s["metrics"]["accuracy/speed"] == 100.0
    assert s["options"]["temperature"] == preset("paralinguistic").temperature


def test_bad_inputs_are_one_line(tmp_path, espeak_wav, home, capsys):
    rc, _, err = run_cli(["eval", "asr", str(tmp_path / "nope"), "--model", "scripted:x.yaml"], capsys)
    assert rc == 1 and "dataset not found" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run_cli(["eval", "asr", str(empty), "--model", "scripted:x.yaml"], capsys)
    assert rc == 1 and "cannot tell the dataset layout" in err and len(err.strip().splitlines()) == 1
    # A broken audio file fails its item (recorded, counted as all-deleted), not the run.
    data = librispeech(tmp_path / "data", espeak_wav)
    (data / "1089" / "134686" / f"{EN[0][0]}.flac").write_bytes(b"not audio")
    model = script(tmp_path / "s.yaml", [r for _, _, r in EN[1:]])
    rc, stdout, err = run_cli(["eval", "asr", str(data), "--model", model, "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["errors"] == 1 and s["metrics"]["deletions"] == 8 and "1 failed" in stdout
    # Nothing answered at all (a dead server, an empty script): a non-zero status and one line.
    rc, _, err = run_cli(["eval", "asr", str(data), "--model", script(tmp_path / "e.yaml", []),
                          "--out", str(tmp_path / "e")], capsys)
    assert rc == 1 and "every item failed" in err and len(err.strip().splitlines()) == 1


def test_eval_with_the_fake_checkpoint(tmp_path, espeak_wav, fake_checkpoint, home, capsys):
    """The whole path with a real (random-weight) model: local backend, official prompt, greedy ASR."""
    data = librispeech(tmp_path / "data", espeak_wav)
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["eval", "asr", str(data), "--model", str(fake_checkpoint), "--limit", "2",
                               "--max-new-tokens", "4", "--out", str(out), "--device", "cpu"], capsys)
    assert rc == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["backend"] == "local" and s["n"] == 2 and s["total"] == 2
    assert s["device"] == "cpu" and "float" in s["dtype"] and s["wall_s"] > 0 and s["tokens_per_s"] > 0
    assert s["options"]["max_new_tokens"] == 4 and s["options"]["temperature"] == preset("asr").temperature
    assert s["value"] is not None and s["completion_tokens"] > 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    # The same set with int8 weights: refused in the float run's folder, compared side by side in its own.
    q8 = ["eval", "asr", str(data), "--model", str(fake_checkpoint), "--limit", "2", "--max-new-tokens", "4",
          "--device", "cpu", "--quantize", "int8"]
    rc, _, err = run_cli([*q8, "--out", str(out)], capsys)
    assert rc == 1 and "holds another run" in err
    rc, _, err = run_cli([*q8, "--out", str(tmp_path / "int8")], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "int8" / "summary.json").read_text())["quantize"] == "int8"
    rc, stdout, err = run_cli(["eval", "compare", str(out), str(tmp_path / "int8"), "--plot", ""], capsys)
    assert rc == 0 and "int8 (local, int8)" in stdout and "run (local)" in stdout


def test_ctrl_c_then_the_same_command_continues(tmp_path, espeak_wav, home, capsys):
    """A real Ctrl-C (SIGINT) in the middle of `stepvoice eval`, then the same command again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data = librispeech(tmp_path / "data", espeak_wav)
    out = tmp_path / "run"
    spec = script(tmp_path / "s.yaml", [{"text": r, "delay_ms": 150} for _, _, r in EN])
    argv = ["eval", "asr", str(data), "--model", spec, "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "stepvoice", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to continue" in err
    done = [json.loads(x)["id"] for x in results.read_text().splitlines()]
    assert 1 <= len(done) < len(EN)
    # The scripted engine starts its list afresh in a new process: give it the replies still to come.
    script(tmp_path / "s.yaml", [r for u, _, r in EN if u not in done])
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert f"resuming {out}: {len(done)} of 3" in err
    s = json.loads((out / "summary.json").read_text())
    assert s["n"] == 3 and s["value"] == pytest.approx(100 / 17, abs=1e-4)
    assert sorted(json.loads(x)["id"] for x in results.read_text().splitlines()) == [u for u, _, _ in EN]
