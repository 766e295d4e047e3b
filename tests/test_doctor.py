"""`stepvoice doctor` and `stepvoice model list|rm`: what the machine has and needs, the model cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "step_audio_2_mini_config.json"


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stepvoice", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_the_packaged_official_config_is_the_fixture_and_plans_per_precision():
    import stepvoice
    from stepvoice.assistant.cli import doctor

    packaged = Path(stepvoice.__file__).parent / "step_audio_2_mini_config.json"
    assert json.loads(packaged.read_text()) == json.loads(FIXTURE.read_text())
    need = doctor.needs(["cpu"])
    assert need["bfloat16"]["weights"] == 2 * doctor.official_config_params()  # the 16.6 GB of the download
    assert need["float32"]["weights"] == 4 * doctor.official_config_params()
    assert need["float32"]["total"] > need["bfloat16"]["total"] > need["int8"]["total"] > need["int4"]["total"]
    # the same totals as `stepvoice model plan` gives for each scheme
    from stepvoice.engine.plan import make_plan
    import torch

    plan = make_plan(doctor.official_config(), torch.device("cpu"), torch.bfloat16, "int8")
    assert need["int8"]["total"] == plan.total_bytes and need["int8"]["weights"] == plan.weights_bytes


def test_doctor_reports_devices_needs_parts_and_files(home, tmp_path, monkeypatch, capsys):
    from stepvoice.assistant.cli import main

    (home / "voices").mkdir(parents=True)
    (home / "voices" / "v.bin").write_bytes(b"x" * 5000)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # as if not installed
    assert main(["doctor", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["devices"][0]["name"] == "cpu" and r["devices"][0]["total"] > 0
    assert set(r["model_needs"]) == {"float32", "bfloat16", "int8", "int4"}
    parts = {p["part"].split(" (")[0]: p for p in r["optional"]}
    assert parts["speaker encoder"]["present"] is False and "resemblyzer" in parts["speaker encoder"]["fix"]
    assert parts["default voice clip"]["present"] is True
    files = {f["what"]: f for f in r["files"]}
    assert files["voices"]["bytes"] == 5000 and files["models"]["bytes"] is None
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "bfloat16     16.6 GB" in text and "speaker encoder" in text and "missing: pip install --no-deps resemblyzer" in text


def test_model_list_and_rm_on_the_hub_cache(tmp_path):
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    blob = repo / "blobs" / ("b" * 64)
    blob.parent.mkdir()
    blob.write_bytes(b"x" * 1000)
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(blob)
    env = {"HF_HOME": str(tmp_path / "hf")}
    listed = run("model", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(m["id"], m["bytes"]) for m in json.loads(listed.stdout)] == [("acme/tiny", 1000)]
    gone = run("model", "rm", "acme/tiny", env=env)
    assert gone.returncode == 0 and "removed acme/tiny" in gone.stdout and not repo.exists()
    again = run("model", "rm", "acme/tiny", env=env)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "not in the model cache" in again.stderr
    assert "no downloaded checkpoints" in run("model", "list", env=env).stdout
