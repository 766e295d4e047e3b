"""Barge-in: user speech during playback stops it within 100 ms, cancels generation, and the
session keeps only what was played."""
from __future__ import annotations

import asyncio
import io
import math

import numpy as np
import pytest

from stepvoice.assistant.audio_io.inprocess import InProcessAudio
from stepvoice.assistant.endpointing import EndpointConfig
from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
from stepvoice.engine.messages import Speech, Text
from voice_loop_support import SAMPLES_PER_CODE, espeak, make_session, silence

pytestmark = pytest.mark.timeout(60)
OUT_RATE = 24000
REPLY = "Here is a very long answer that goes on and on and on for a while."


def _assert_history_holds_only_what_was_heard(session, played_s, codes):
    roles = [m.role for m in session.history]
    assert roles == ["human", "assistant", "human", "assistant"]
    speech = session.history[1].content[0]
    assert isinstance(speech, Speech)
    heard = math.ceil(played_s * 25 - 1e-9)  # 25 codes per second
    assert 0 < heard < len(codes)
    assert speech.codes == tuple(codes[:heard])
    # the scripted engine speaks one word before each group of 4 codes (TA4)
    words = REPLY.split(" ")
    spoken = math.ceil(heard / 4)
    assert speech.text.strip() == " ".join(words[:spoken])
    assert session.history[3].content == [Text("Sure, I stopped.")]


def _run_barge_in(after_playback_s: float, delay_ms: float):
    codes = list(range(200, 300))  # 4 s of reply
    session, backend = make_session([
        {"text": REPLY, "speech_codes": codes,
         "delay_ms": delay_ms},
        {"text": "Sure, I stopped."},
    ])
    audio = InProcessAudio([silence(0.3), espeak("Tell me a long story")], speed=1.0)
    loop = VoiceLoop(session, audio, out=io.StringIO(),
                     config=VoiceLoopConfig(full_duplex=True, endpoint=EndpointConfig(silence_ms=320)))

    async def talk_over():
        while audio.playback.first_read_at is None:
            await asyncio.sleep(0.005)
        await asyncio.sleep(after_playback_s)
        audio.inject(espeak("wait, stop"))

    async def go():
        helper = asyncio.create_task(talk_over())
        await loop.run(max_turns=2)
        await helper

    asyncio.run(go())
    return session, backend, audio, loop, codes


def test_barge_in_stops_playback_within_100_ms_and_cancels_generation():
    # generation (50 events x 40 ms) is still running when the user talks
    session, backend, audio, loop, codes = _run_barge_in(after_playback_s=0.5, delay_ms=40)
    assert len(loop.interruptions) == 1
    first = loop.traces[0]
    assert first.interrupted and first.end_reason == "cancelled"
    assert len(backend.requests) == 2  # the interruption became the next turn
    _, played_at_injection, out_at_injection = audio.injections[0]
    stop_latency = first.played_s * OUT_RATE - played_at_injection
    assert 0 <= stop_latency <= 0.1 * OUT_RATE, f"{stop_latency / OUT_RATE * 1000:.0f} ms played after the speech"
    # the speaker really went quiet: nothing after the stop block (turn 2 is a text reply)
    out = audio.output
    assert np.abs(out[out_at_injection + int(0.1 * OUT_RATE):]).max() < 1e-6
    assert 0.3 < first.played_s < 1.0
    assert first.played_s * OUT_RATE < len(codes) * SAMPLES_PER_CODE
    _assert_history_holds_only_what_was_heard(session, first.played_s, codes)


def test_barge_in_after_generation_finished_still_truncates():
    # generation is done long before playback: the reply is complete when the user talks
    session, backend, audio, loop, codes = _run_barge_in(after_playback_s=1.0, delay_ms=0)
    first = loop.traces[0]
    assert first.interrupted and first.end_reason == "stop"
    _, played_at_injection, _ = audio.injections[0]
    assert first.played_s * OUT_RATE - played_at_injection <= 0.1 * OUT_RATE
    _assert_history_holds_only_what_was_heard(session, first.played_s, codes)
