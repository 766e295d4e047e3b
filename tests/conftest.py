"""Shared pytest fixtures. Append small, clearly named fixtures; keep edits minimal."""
from __future__ import annotations

import os
import re

import pytest

pytest_plugins = ["loop_watch", "pytester"]  # asyncio debug mode; product callbacks over 100 ms fail the test


# `.ci/run` sets STEPVOICE_NO_SKIPS=1: a skipped test fails the run unless it is marked `live` (real
# network services) or `gpu` (needs CUDA). Missing pieces are installed by the test setup, not skipped.
ALLOWED_SKIP_MARKS = ("live", "gpu")
_bad_skips: list = []


def _skip_reason(report) -> str:
    return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)


def pytest_runtest_logreport(report):
    # GPU-only: marked `gpu`, or a skip whose reason names CUDA/GPU (a CUDA check without the mark)
    gpu_only = re.search(r"\b(cuda|gpu)\b", _skip_reason(report), re.I) if report.skipped else None
    if report.skipped and not gpu_only and not any(m in report.keywords for m in ALLOWED_SKIP_MARKS):
        _bad_skips.append(report)


def pytest_terminal_summary(terminalreporter):
    if _bad_skips and os.environ.get("STEPVOICE_NO_SKIPS") == "1":
        terminalreporter.section("skips that fail this run (STEPVOICE_NO_SKIPS=1)", red=True)
        for r in _bad_skips:
            terminalreporter.write_line(f"{r.nodeid}: {_skip_reason(r)}")


def pytest_sessionfinish(session, exitstatus):
    if _bad_skips and os.environ.get("STEPVOICE_NO_SKIPS") == "1" and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def fake_checkpoint(tmp_path_factory):
    """A tiny fake Step-Audio 2 checkpoint in the official layout (written once per session).
    Tests must not modify it: copy it first (see tests/test_checkpoint_check.py)."""
    from stepvoice.engine.checkpoint import fake

    return fake(tmp_path_factory.mktemp("fake_ckpt") / "Step-Audio-2-mini", "tiny")


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory):
    """Factory: `espeak_wav(text, voice="en-us", speed=150, pitch=50, rate=16000) -> Path`,
    speech made with espeak-ng and converted to mono `rate` Hz with sox (cached per arguments)."""
    import shutil
    import subprocess

    assert shutil.which("espeak-ng") and shutil.which("sox"), \
        "espeak-ng and sox are needed (scripts/setup.sh installs them, as root)"
    folder = tmp_path_factory.mktemp("espeak")
    made: dict[tuple, object] = {}

    def make(text: str, voice: str = "en-us", speed: int = 150, pitch: int = 50, rate: int = 16000):
        key = (text, voice, speed, pitch, rate)
        if key not in made:
            raw, out = folder / f"raw{len(made)}.wav", folder / f"speech{len(made)}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                           check=True, capture_output=True)
            subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", str(out)], check=True, capture_output=True)
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def fake_token2wav(tmp_path_factory):
    """A tiny fake token2wav/ folder (flow.yaml, flow.pt, hift.pt, two small ONNX files), written
    once per session; read-only for tests (copy it to corrupt or change it)."""
    from stepvoice.engine.token2wav.fake import write_fake_token2wav

    return write_fake_token2wav(tmp_path_factory.mktemp("fake_t2w") / "token2wav", "tiny")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An empty data dir and no user config or STEPVOICE_* settings from the machine; the
    voice bank's starter voices are indexed with the fast hash embedder."""
    import os

    monkeypatch.setenv("STEPVOICE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for k in list(os.environ):
        if k.startswith("STEPVOICE_") and k != "STEPVOICE_HOME":
            monkeypatch.delenv(k)
    monkeypatch.setenv("STEPVOICE_TEXT_EMBEDDER", "hash")
    return tmp_path / "home"


@pytest.fixture(scope="session")
def fake_small_checkpoint(tmp_path_factory):
    """The `small` fake (hidden 256, 8 layers: wide enough for int4 groups of 128), no token2wav.
    Tests must not modify it."""
    from stepvoice.engine.checkpoint import fake

    return fake(tmp_path_factory.mktemp("fake_small") / "Step-Audio-2-mini", "small", token2wav=False)


@pytest.fixture(scope="module")
def token2wav(fake_token2wav):
    """The fake token2wav loaded once per test module (server tests that speak)."""
    from stepvoice.engine.token2wav import Token2Wav

    return Token2Wav.from_dir(fake_token2wav)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate and key for 127.0.0.1 (the wss:// tests)."""
    from server_support import self_signed

    return self_signed(tmp_path_factory.mktemp("tls"))
