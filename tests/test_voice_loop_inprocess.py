"""The voice loop end to end through the in-process audio backend: espeak-ng speech in,
scripted engine, session, token2wav stand-in, reply played, trace complete."""
from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest

from stepvoice.assistant.audio_io.inprocess import InProcessAudio
from stepvoice.assistant.endpointing import EndpointConfig
from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
from voice_loop_support import SAMPLES_PER_CODE, make_session, espeak, silence

pytestmark = pytest.mark.timeout(60)


def test_one_spoken_turn_is_detected_answered_played_and_traced(tmp_path):
    codes = list(range(100, 150))  # 2 s of reply
    session, backend = make_session([{"text": "It is sunny in Paris today.", "speech_codes": codes}])
    speech = espeak("What is the weather like in Paris?")
    audio = InProcessAudio([silence(0.5), speech], speed=2.0)
    out = io.StringIO()
    loop = VoiceLoop(session, audio, out=out, log_path=tmp_path / "chat.jsonl",
                     config=VoiceLoopConfig(trace=True, endpoint=EndpointConfig(silence_ms=320)))
    asyncio.run(loop.run(max_turns=1))

    # the turn: the session got the utterance (the speech, with pre-roll, as 16 kHz samples)
    assert len(backend.requests) == 1
    assert session.history[0].role == "human"
    heard = session.history[0].content[0].samples
    assert len(speech) <= len(heard) <= len(speech) + 0.6 * 16000
    # the reply was played: every code's audio reached the speaker, in order
    played = audio.output
    voiced = np.flatnonzero(np.abs(played) > 1e-3)
    assert voiced.size and voiced[-1] - voiced[0] + 1 >= len(codes) * SAMPLES_PER_CODE - 50
    assert audio.playback.played == len(codes) * SAMPLES_PER_CODE
    # the text was shown live and the trace is complete and printed
    text = out.getvalue()
    assert "assistant: It is sunny in Paris today." in text
    trace = loop.traces[0]
    assert trace.complete and not trace.interrupted
    assert trace.hangover_s == pytest.approx(0.32, abs=0.033)
    assert trace.played_s == pytest.approx(2.0, abs=0.01)
    assert "[trace] turn 1: hangover 320 ms" in text
    record = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    turn = [r for r in record if r["type"] == "turn"][0]
    assert turn["complete"] and set(turn["ms_after_endpoint"]) == {
        "hangover", "first_token", "first_code", "first_pcm", "playback_start"}


def test_half_duplex_ignores_the_mic_while_speaking():
    codes = list(range(50))  # 2 s reply
    session, backend = make_session([{"text": "A long answer.", "speech_codes": codes}, {"text": "Second."}])
    speech = espeak("Tell me something")
    audio = InProcessAudio([silence(0.3), speech], speed=2.0, finite=True, tail_s=3.0)

    async def go():
        loop = VoiceLoop(session, audio, out=io.StringIO(),
                         config=VoiceLoopConfig(endpoint=EndpointConfig(silence_ms=320)))

        async def talk_over():
            while audio.playback.first_read_at is None:
                await asyncio.sleep(0.01)
            audio.inject(espeak("stop talking please"))  # heard by the mic, ignored: half duplex

        helper = asyncio.create_task(talk_over())
        await loop.run()
        await helper
        return loop

    loop = asyncio.run(go())
    assert len(backend.requests) == 1  # the speech over the reply started no turn
    assert not loop.interruptions
    assert loop.traces[0].played_s == pytest.approx(2.0, abs=0.01)
