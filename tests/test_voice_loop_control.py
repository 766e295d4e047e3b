"""Push-to-talk, device loss and stalls on the in-process backend, Ctrl-C on the CLI."""
from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stepvoice.assistant.audio_io.backend import AudioBackend
from stepvoice.assistant.audio_io.inprocess import InProcessAudio
from stepvoice.assistant.audio_io.playback import PlaybackQueue
from stepvoice.assistant.endpointing import EndpointConfig
from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
from stepvoice.engine.errors import AudioError
from voice_loop_support import espeak, make_session, silence, tone

pytestmark = pytest.mark.timeout(60)


def test_push_to_talk_sends_what_was_said_between_press_and_release():
    session, backend = make_session([{"text": "Long reply.", "speech_codes": list(range(75))}, {"text": "Ok."}])
    # a steady tone the VAD does not call speech: only the key decides
    audio = InProcessAudio([tone(10.0, 150, amp=0.05)], speed=2.0)
    loop = VoiceLoop(session, audio, out=io.StringIO(), config=VoiceLoopConfig(push_to_talk=True))

    async def user():
        await asyncio.sleep(0.3)
        loop.press()
        await asyncio.sleep(0.5)  # 1 s of stream time at speed 2
        loop.release()
        while audio.playback.first_read_at is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.25)
        loop.press()  # half duplex, but a key press interrupts the reply
        await asyncio.sleep(0.2)
        loop.release()

    async def go():
        helper = asyncio.create_task(user())
        await loop.run(max_turns=2)
        await helper

    asyncio.run(go())
    assert len(backend.requests) == 2
    first = session.history[0].content[0].samples
    assert 0.9 * 16000 <= len(first) <= 1.4 * 16000  # the held second (+ pre-roll), not the whole tone
    assert loop.traces[0].interrupted and 0.3 < loop.traces[0].played_s < 1.5
    assert len(loop.interruptions) == 1


def test_lost_device_is_reopened_and_the_conversation_goes_on():
    session, backend = make_session([{"text": "First.", "speech_codes": list(range(50))},
                                     {"text": "Second.", "speech_codes": list(range(10))}])
    audio = InProcessAudio([silence(0.3), espeak("hello there")], speed=2.0)
    out = io.StringIO()
    loop = VoiceLoop(session, audio, out=out,
                     config=VoiceLoopConfig(reopen_delay_s=0.05, endpoint=EndpointConfig(silence_ms=320)))

    async def user():
        while audio.playback.first_read_at is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        audio.fail("the USB microphone was unplugged")
        await asyncio.sleep(0.5)
        audio.feed(espeak("are you there"))

    async def go():
        helper = asyncio.create_task(user())
        await loop.run(max_turns=2)
        await helper

    asyncio.run(go())
    assert "error: in-process audio: the USB microphone was unplugged; reopening" in out.getvalue()
    assert loop.traces[0].interrupted and loop.traces[0].played_s < 2.0
    assert [m.role for m in session.history] == ["human", "assistant", "human", "assistant"]
    assert loop.traces[1].complete


class SilentDevice(AudioBackend):
    """Opens fine, then never delivers a block (a driver that hangs)."""

    description = "stuck microphone"

    def __init__(self):
        super().__init__()
        self.playback = PlaybackQueue(24000)
        self.opened = self.closed = 0

    async def start(self):
        self._blocks = asyncio.Queue()
        self.opened += 1

    async def close(self):
        self.closed += 1


def test_stalled_device_ends_with_a_clear_error_and_no_hang():
    session, _ = make_session([])
    audio = SilentDevice()
    loop = VoiceLoop(session, audio, out=io.StringIO(),
                     config=VoiceLoopConfig(stall_timeout_s=0.3, reopen_attempts=2, reopen_delay_s=0.05))
    t = time.perf_counter()
    with pytest.raises(AudioError, match="no audio from the input device for 0.3 s"):
        asyncio.run(loop.run())
    assert time.perf_counter() - t < 5
    assert audio.opened == 3 and audio.closed == audio.opened  # every stream opened was closed


@pytest.mark.timeout(120)
def test_ctrl_c_ends_cleanly_and_saves_the_conversation(tmp_path):
    from stepvoice.engine.token2wav.fake import write_fake_token2wav

    write_fake_token2wav(tmp_path / "t2w", size="tiny")
    (tmp_path / "s.yaml").write_text("replies:\n  - text: Hi.\n    speech_codes: [5, 6, 7, 8]\n")
    talk = np.concatenate([silence(0.3), espeak("hello"), silence(1.0), espeak("and now a long pause")])
    sf.write(tmp_path / "q.wav", np.concatenate([talk, silence(30.0)]), 16000)
    env = dict(os.environ, HOME=str(tmp_path), STEPVOICE_HOME=str(tmp_path / "data"), OMP_NUM_THREADS="1",
               STEPVOICE_TOKEN2WAV=str(tmp_path / "t2w"))
    proc = subprocess.Popen([sys.executable, "-m", "stepvoice", "chat", "--model", "scripted:s.yaml", "--no-tools",
                             "--input-file", "q.wav", "--silence-ms", "300"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    saw_reply = False
    deadline = time.time() + 60
    line = ""
    while time.time() < deadline and "Hi." not in line:
        line = proc.stdout.readline()
        saw_reply = saw_reply or "Hi." in line
    assert saw_reply
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    saved = Path(err.split("conversation saved to ")[1].split()[0])
    roles = [m["role"] for m in json.loads(saved.read_text())["messages"]]
    assert roles[:2] == ["human", "assistant"]


def test_stopping_mid_reply_closes_everything_and_keeps_only_what_was_heard():
    codes = list(range(100))  # 4 s
    session, _ = make_session([{"text": "one two three four five six seven", "speech_codes": codes}])
    audio = InProcessAudio([silence(0.3), espeak("hello there")], speed=2.0)
    loop = VoiceLoop(session, audio, out=io.StringIO(), config=VoiceLoopConfig(endpoint=EndpointConfig(silence_ms=320)))
    stop = asyncio.Event()

    async def user():
        while audio.playback.first_read_at is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.25)  # ~0.5 s of audio at speed 2
        stop.set()  # what Ctrl-C does in `stepvoice chat`

    async def go():
        helper = asyncio.create_task(user())
        await loop.run(stop=stop)
        await helper

    asyncio.run(go())
    assert audio._task is None  # the audio clock was stopped
    assert [i.reason for i in loop.interruptions] == ["stopped"]
    speech = session.history[1].content[0]
    assert 0 < len(speech.codes) < 40 and speech.codes == tuple(codes[:len(speech.codes)])
