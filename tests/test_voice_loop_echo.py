"""Open speakers, full duplex: the reply's echo alone must not interrupt it once the echo
canceller (WebRTC AEC3 from the livekit wheel) cleans the mic; the user still can."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

from stepvoice.assistant.audio_io.inprocess import InProcessAudio
from stepvoice.assistant.endpointing import EndpointConfig
from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
from voice_loop_support import SpeechToken2Wav, espeak, make_session, silence

import livekit.rtc  # noqa: E402,F401  (the aec extra, installed by the test extra)
pytestmark = pytest.mark.timeout(60)
REPLY_CODES = list(range(100))  # 4 s of (speech-like) reply


def run(echo_cancel: bool, full_duplex: bool, user_at_s: float | None = None):
    t2w = SpeechToken2Wav("This is the assistant talking for quite a while about the weather and other things.")
    session, backend = make_session([{"text": "A long spoken answer.", "speech_codes": REPLY_CODES},
                                     {"text": "Ok."}, {"text": "Ok."}, {"text": "Ok."}], token2wav=t2w)
    audio = InProcessAudio([silence(0.3), espeak("Tell me about the weather")], speed=2.0, echo_gain=0.6)
    loop = VoiceLoop(session, audio, out=io.StringIO(),
                     config=VoiceLoopConfig(full_duplex=full_duplex, echo_cancel=echo_cancel,
                                            endpoint=EndpointConfig(silence_ms=320)))

    async def user():
        while audio.playback.first_read_at is None:
            await asyncio.sleep(0.01)
        if user_at_s is not None:
            await asyncio.sleep(user_at_s / audio.speed)
            audio.inject(espeak("wait, stop", voice="en-us+f3"))

    async def go():
        helper = asyncio.create_task(user())
        done = asyncio.Event()

        async def until_reply_over():
            while not loop.traces or loop.traces[0].done is None:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            done.set()

        watcher = asyncio.create_task(until_reply_over())
        await loop.run(stop=done)
        await asyncio.gather(helper, watcher)

    asyncio.run(go())
    return loop


def test_without_echo_cancellation_the_echo_interrupts_the_reply():
    loop = run(echo_cancel=False, full_duplex=True)
    assert loop.traces[0].interrupted  # the assistant heard itself: why open speakers default to half duplex
    assert loop.traces[0].played_s < 1.0


def test_with_echo_cancellation_the_reply_plays_through_and_the_user_can_still_interrupt():
    loop = run(echo_cancel=True, full_duplex=False)
    assert not loop.interruptions
    assert loop.traces[0].played_s == pytest.approx(len(REPLY_CODES) / 25, abs=0.01)
    loop = run(echo_cancel=True, full_duplex=False, user_at_s=2.0)
    assert loop.traces[0].interrupted
    assert 2.0 <= loop.traces[0].played_s < 2.6


def test_canceller_keeps_block_sizes_and_removes_a_delayed_echo():
    from stepvoice.assistant.audio_io.echo import EchoCanceller

    far = np.concatenate([espeak("one two three four five six seven eight nine ten")] * 2)
    echo = np.zeros_like(far)
    echo[800:] = 0.5 * far[:-800]  # 50 ms later, half as loud
    aec = EchoCanceller()
    out = []
    for i in range(0, len(far) - 512, 512):
        aec.far(far[i:i + 512], 16000)
        cleaned = aec.near(echo[i:i + 512])
        assert cleaned.shape == (512,)
        out.append(cleaned)
    out = np.concatenate(out)
    tail = slice(len(out) // 2, len(out))  # after convergence
    erle_db = 20 * np.log10(np.sqrt(np.mean(echo[tail] ** 2)) / (np.sqrt(np.mean(out[tail] ** 2)) + 1e-9))
    assert erle_db > 15
