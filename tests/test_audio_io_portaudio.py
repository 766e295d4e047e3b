"""The voice loop through the real PortAudio path (sounddevice -> ALSA) on virtual devices:
an asoundrc in a temporary HOME defines a FIFO-fed microphone at 44.1 kHz and a
FIFO-drained speaker at 48 kHz (ALSA `file` plugin over `null`), so native-rate
opening and resampling both ways are exercised. Runs in a child process because
PortAudio reads the ALSA configuration once per process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voice_loop_support import need_espeak

TESTS = Path(__file__).parent
MIC_RATE, SPK_RATE = 44100, 48000

ASOUNDRC = """
pcm.!default {{ type asym playback.pcm "spk" capture.pcm "mic" }}
ctl.!default {{ type hw card 0 }}
pcm.nullpcm {{ type null }}
pcm.micfile {{ type file slave.pcm "nullpcm" file "/dev/null" infile "{mic}" format "raw" }}
pcm.mic {{ type plug slave {{ pcm "micfile" format S16_LE rate {mic_rate} channels 1 }} }}
pcm.spkfile {{ type file slave.pcm "nullpcm" file "{spk}" format "raw" }}
pcm.spk {{ type plug slave {{ pcm "spkfile" format S16_LE rate {spk_rate} channels 1 }} }}
"""


def _portaudio_or_skip() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("virtual ALSA devices need Linux")
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True, text=True)
    assert probe.returncode == 0, ("PortAudio (libportaudio2) is not installed (scripts/setup.sh installs it): "
                                   + probe.stderr.strip().splitlines()[-1])


@pytest.fixture()
def alsa_home(tmp_path):
    _portaudio_or_skip()
    need_espeak()
    home = tmp_path / "home"
    home.mkdir()
    mic, spk = tmp_path / "mic.fifo", tmp_path / "spk.fifo"
    os.mkfifo(mic)
    os.mkfifo(spk)
    (home / ".asoundrc").write_text(ASOUNDRC.format(mic=mic, spk=spk, mic_rate=MIC_RATE, spk_rate=SPK_RATE))
    return home, mic, spk


def run_child(alsa_home, scenario: str) -> dict:
    home, mic, spk = alsa_home
    env = dict(os.environ, HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, str(TESTS / "audio_io_portaudio_child.py"), scenario, str(mic), str(spk), str(MIC_RATE),
         str(SPK_RATE)], env=env, capture_output=True, text=True, timeout=90)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.timeout(120)
def test_spoken_turn_through_portaudio_virtual_devices(alsa_home):
    r = run_child(alsa_home, "turn")
    assert "error" not in r, r.get("error")
    assert (r["input"], r["output"]) == ("mic", "spk")
    assert r["output_rate"] == SPK_RATE  # opened at the device's rate, replies resampled 24 -> 48 kHz
    assert r["requests"] == 1 and r["history_roles"][:2] == ["human", "assistant"]
    # the utterance reached the session at 16 kHz (44.1 kHz mic resampled): ~1.5 s of speech
    assert 0.8 * 16000 < r["user_samples"][0] < 3.5 * 16000
    trace = r["traces"][0]
    assert trace["complete"], trace
    assert "[trace] turn 1" in r["printed"] and "assistant: Hello from the speaker." in r["printed"]
    # the reply really left through PortAudio into the speaker FIFO: 2 s of tone at the device rate
    assert r["speaker_loud_s"] == pytest.approx(2.0, abs=0.15)
    assert trace["played_s"] == pytest.approx(2.0, abs=0.05)


@pytest.mark.timeout(120)
def test_device_that_disappears_mid_stream_is_reopened_and_the_session_survives(alsa_home):
    r = run_child(alsa_home, "lost")
    assert "error" not in r, r.get("error")
    assert any("input device stopped" in e and "reopening" in e for e in r["loop_errors"]), r["loop_errors"]
    # the reply in progress was cut where the device vanished; the conversation went on
    assert r["traces"][0]["interrupted"] and r["traces"][0]["played_s"] < 1.5
    assert r["requests"] == 2 and r["history_roles"].count("human") == 2
    assert r["traces"][1]["complete"]


@pytest.mark.timeout(120)
def test_device_that_does_not_come_back_ends_with_a_clear_error(alsa_home):
    r = run_child(alsa_home, "lost-gone")
    assert "could not be reopened" in r["error"] and "no-such-microphone" in r["error"]
    assert r["elapsed_s"] < 15  # no hang
    assert r["history_roles"][:2] == ["human", "assistant"]  # the conversation so far is kept


@pytest.mark.timeout(60)
def test_unsupported_rate_is_a_clear_error(alsa_home):
    r = run_child(alsa_home, "bad-rate")
    assert "does not accept 1 Hz" in r["error"] and "mic" in r["error"]
