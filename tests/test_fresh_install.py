"""A clean `pip install .` (after torch, no setup script) is a working product (slow: builds a venv).

Fresh venv without system site packages, torch from the index (STEPVOICE_TORCH, as setup.sh), then
the project from a copy of this checkout. s3tokenizer and resemblyzer are NOT installed (the setup
script adds them --no-deps): doctor says so, ask and serve work without them, and the import names
are `stepvoice.*` only.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "replies:\n  - text: Hello from a fresh install.\n  - text: Served from a fresh install.\n"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fresh")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "out"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    pip = [str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPVOICE_", "PYTHON", "VIRTUAL_ENV"))}
    subprocess.run([*pip, f"torch=={os.environ.get('STEPVOICE_TORCH', '2.13.0')}"], check=True, timeout=1800, env=env)
    subprocess.run([*pip, str(src)], check=True, timeout=1800, env=env)
    work = tmp / "work"  # a cwd away from the checkout: nothing importable by accident
    work.mkdir()
    (work / "s.yaml").write_text(SCRIPT)
    env |= {"STEPVOICE_HOME": str(tmp / "home"), "XDG_CONFIG_HOME": str(tmp / "xdg"), "HF_HOME": str(tmp / "hf"),
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "STEPVOICE_TEXT_EMBEDDER": "hash"}
    return tmp / "venv" / "bin", work, env


def run(fresh, *argv: str, **kw) -> subprocess.CompletedProcess:
    bin_dir, work, env = fresh
    return subprocess.run([str(bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=work, env=env,
                          timeout=600, **kw)


def test_only_the_stepvoice_namespace_is_installed(fresh):
    assert run(fresh, "python", "-c", "import stepvoice.tools, stepvoice.engine, stepvoice.assistant").returncode == 0
    for bare in ("tools", "engine", "assistant", "retrieval", "voice_bank"):
        out = run(fresh, "python", "-c", f"import {bare}")
        assert out.returncode == 1 and "ModuleNotFoundError" in out.stderr, bare


def test_doctor_version_and_missing_optional_parts(fresh):
    assert run(fresh, "stepvoice", "--version").stdout.startswith("stepvoice ")
    out = run(fresh, "stepvoice", "doctor", "--json")
    assert out.returncode == 0, out.stderr
    parts = {p["part"].split(" (")[0]: p["present"] for p in json.loads(out.stdout)["optional"]}
    assert parts["speaker encoder"] is False and parts["default voice clip"] is False


def test_ask_scripted_and_fake_checkpoint(fresh):
    out = run(fresh, "stepvoice", "ask", "--model", "scripted:s.yaml", input="hi")
    assert out.returncode == 0 and out.stdout == "Hello from a fresh install.\n", out.stderr
    made = run(fresh, "stepvoice", "model", "fake", "ckpt")
    assert made.returncode == 0, made.stderr
    out = run(fresh, "stepvoice", "ask", "--model", "ckpt", "--text", "hi", "--json", "--max-new-tokens", "6")
    assert out.returncode == 0, out.stderr
    assert 0 < len(json.loads(out.stdout)["token_ids"]) <= 6


def test_serve_answers(fresh):
    from server_support import text_turn

    from stepvoice.assistant.server.launch import ADDRESS

    bin_dir, work, env = fresh
    made = run(fresh, "stepvoice", "model", "fake", "ckpt2")
    assert made.returncode == 0, made.stderr
    with open(work / "serve.log", "w") as log:
        proc = subprocess.Popen([str(bin_dir / "stepvoice"), "serve", "--port", "0", "--model", "scripted:s.yaml",
                                 "--token2wav", "ckpt2/token2wav"], stdout=subprocess.PIPE, stderr=log, text=True,
                                cwd=work, env=env)
    try:
        line = proc.stdout.readline()
        m = ADDRESS.search(line)
        assert m, (line, (work / "serve.log").read_text())

        assert asyncio.run(text_turn(int(m.group(1)), timeout=120))[0] == "Hello from a fresh install."
    finally:
        proc.terminate()
        proc.wait(30)
