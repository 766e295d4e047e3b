"""timbre_rag end to end: the real voice bank picks a voice, the real token2wav (fake weights) speaks in it."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stepvoice.assistant.session import Session
from stepvoice.engine.backends.scripted import ScriptedBackend
from stepvoice.engine.events import AudioChunk, VoiceChanged
from stepvoice.tools import load_registry


@pytest.fixture(scope="module")
def token2wav(fake_checkpoint):
    from stepvoice.engine.token2wav import Token2Wav

    return Token2Wav.from_dir(fake_checkpoint / "token2wav")


def test_timbre_rag_with_the_real_bank_and_token2wav(tmp_path, fake_checkpoint, token2wav, espeak_wav):
    from stepvoice.voice_bank import VoiceBank

    bank = VoiceBank.open(tmp_path, prepare=token2wav.prepare_voice, text_embedder="hash", checkpoint=fake_checkpoint,
                          starter=False)
    bank.add(espeak_wav("The quick brown fox jumps over the lazy dog near the river bank.", voice="en-us+m3",
                        pitch=20), "deep", "a deep calm low male voice")
    bank.add(espeak_wav("The quick brown fox jumps over the lazy dog near the river bank.", voice="en-us+f3",
                        pitch=80), "bright", "a bright high young female voice")
    codes = list(range(200, 250))
    backend = ScriptedBackend.from_data({"replies": [
        {"tool_calls": [{"name": "timbre_rag", "arguments": {"query": "a deep low male voice"}}]},
        {"text": "Is this deeper?", "speech_codes": codes},
    ]})
    used = []
    original = token2wav.stream

    def spy(voice, *a, **kw):
        used.append(voice)
        return original(voice, *a, **kw)

    token2wav.stream = spy  # instance attribute: only this test's object is spied on
    try:
        session = Session(backend, tools=load_registry(), voice_bank=bank, token2wav=token2wav, voice="bright")

        async def go():
            return [e async for e in session.respond("please talk in a deeper voice", reply="speech")]

        events = asyncio.run(go())
    finally:
        del token2wav.stream
    (changed,) = [e for e in events if isinstance(e, VoiceChanged)]
    assert changed.name == "deep" and session.voice == "deep"
    assert used == [bank.prompt("deep")]  # the spoken answer used the new voice's prompt
    pcm = np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])
    assert abs(len(pcm) - len(codes) * 960) <= 2 * 960
    # The same codes in the old voice sound different: the voice really switched.
    deep = token2wav.synthesize(codes, bank.prompt("deep"))
    bright = token2wav.synthesize(codes, bank.prompt("bright"))
    n = min(len(pcm), len(deep), len(bright))
    assert np.abs(pcm[:n] - bright[:n]).mean() > np.abs(pcm[:n] - deep[:n]).mean()
