"""`stepvoice doctor` and `stepvoice model list|rm`: what the machine has and needs, the model cache."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "step_audio_2_mini_config.json"


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stepvoice", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_parameter_counts_are_the_official_architecture():
    from stepvoice.assistant.cli import doctor
    from stepvoice.engine.checkpoint import params
    from stepvoice.engine.config import StepAudio2Config

    rows = params(StepAudio2Config.from_file(FIXTURE))
    assert doctor.MODEL_PARAMS == sum(math.prod(s) for _, s in rows)
    assert doctor.LLM_LINEAR_PARAMS == sum(math.prod(s) for n, s in rows if n.startswith("model.layers.") and len(s) == 2)
    need = doctor.needs()
    assert need["bfloat16"]["weights"] == 2 * doctor.MODEL_PARAMS  # the 16.6 GB of the download
    assert need["float32"]["total"] > need["bfloat16"]["total"] > need["int8"]["total"] > need["int4"]["total"]


def test_doctor_reports_devices_needs_parts_and_files(home, tmp_path):
    (home / "voices").mkdir(parents=True)
    (home / "voices" / "v.bin").write_bytes(b"x" * 5000)
    out = run("doctor", "--json", env={"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(Path(__file__).parent
              / "fixtures" / "hide_modules"), "HIDE_MODULES": "resemblyzer"})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["devices"][0]["name"] == "cpu" and r["devices"][0]["total"] > 0
    assert set(r["model_needs"]) == {"float32", "bfloat16", "int8", "int4"}
    parts = {p["part"].split(" (")[0]: p for p in r["optional"]}
    assert parts["speaker encoder"]["present"] is False and "resemblyzer" in parts["speaker encoder"]["fix"]
    assert parts["default voice clip"]["present"] is True
    files = {f["what"]: f for f in r["files"]}
    assert files["voices"]["bytes"] == 5000 and files["models"]["bytes"] is None
    text = run("doctor", env={"HF_HOME": str(tmp_path / "hf")})
    assert text.returncode == 0 and "bfloat16" in text.stdout and "16.6 GB" in text.stdout


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
