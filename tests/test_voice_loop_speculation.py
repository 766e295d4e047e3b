"""Speculative replies in the voice loop (in-process audio, espeak-ng speech with inserted silence):
a pause the user talks on after is discarded without a trace; a real end commits what is ready."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

from stepvoice.assistant.audio_io.inprocess import InProcessAudio
from stepvoice.assistant.endpointing import EndpointConfig
from stepvoice.assistant.session import Session
from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
from stepvoice.engine.events import SpeechCodes, TextDelta, ToolCall, TurnEnd, Usage
from stepvoice.engine.messages import Audio
from stepvoice.tools import ToolRegistry, tool
from voice_loop_support import SAMPLES_PER_CODE, ToneToken2Wav, ToneVoiceBank, espeak, silence

pytestmark = pytest.mark.timeout(90)
CODES = 25


class Model:
    """Answers every request (a speculation must not use up a script): `prefill_s` of model time,
    then a spoken reply naming how many samples it heard; with `tool`, a user turn first gets a call."""

    def __init__(self, prefill_s: float = 0.25, tool: bool = False):
        self.prefill_s = prefill_s
        self.tool = tool
        self.heard: list[int] = []  # samples of the user audio of each request

    async def generate(self, messages, options, cancel=None):
        last = messages[-1]
        audio = [p for m in messages if m.role == "human" for p in m.content if isinstance(p, Audio)]
        n = len(audio[-1].samples) if audio else 0
        self.heard.append(n)
        await asyncio.sleep(self.prefill_s)
        if cancel is not None and cancel.is_set():
            yield TurnEnd("cancelled")
            return
        if self.tool and last.role == "human":
            yield ToolCall("note", {"n": n})
            yield TurnEnd("stop", Usage(completion_tokens=1))
            return
        yield TextDelta(f"You said {n} samples. ", "speech")
        for i in range(0, CODES, 5):
            if cancel is not None and cancel.is_set():
                yield TurnEnd("cancelled", Usage(completion_tokens=i))
                return
            await asyncio.sleep(0.005)
            yield SpeechCodes(tuple(range(i, i + 5)))
        yield TurnEnd("stop", Usage(completion_tokens=CODES + 1))


def session_for(model: Model, ran: list[int]) -> Session:
    @tool
    def note(n: int) -> str:
        """Note a number."""
        ran.append(n)
        return "noted"

    registry = ToolRegistry()
    registry.add(note)
    t2w = ToneToken2Wav()
    return Session(model, tools=registry, token2wav=t2w, voice_bank=ToneVoiceBank(t2w), voice="test")


def run_loop(session, clips, speculate: bool, tail_s: float = 2.0):
    audio = InProcessAudio(clips, speed=1.0, finite=True, tail_s=tail_s)
    out = io.StringIO()
    seen: list = []
    loop = VoiceLoop(session, audio, out=out, on_event=seen.append,
                     config=VoiceLoopConfig(trace=True, endpoint=EndpointConfig(silence_ms=500),
                                            speculate=speculate, speculate_pause_ms=200))
    asyncio.run(loop.run(max_turns=1))
    return loop, audio, out.getvalue(), seen


def test_a_resumed_utterance_never_plays_shows_keeps_or_runs_anything_speculative():
    model, ran = Model(tool=True), []
    session = session_for(model, ran)
    first, second = espeak("What is the weather"), espeak("in Paris tomorrow morning")
    loop, audio, text, seen = run_loop(session, [silence(0.5), first, silence(0.35), second], speculate=True)

    assert loop.speculation.discarded >= 1 and loop.speculation.committed == 1
    assert loop.traces[0].speculation == "committed" and "speculation: committed" in text
    full = len(session.history[0].content[0].samples)
    assert full > len(first) + len(second)
    assert min(model.heard) < len(first) + 0.4 * 16000 < full  # a speculation started on the first part
    # kept: one user turn (the whole utterance), the call, its result, the reply
    assert [m.role for m in session.history] == ["human", "assistant", "input", "assistant"]
    assert ran == [full]  # the tool ran once, after the commit, for the real utterance
    shown = [e.text for e in seen if isinstance(e, TextDelta)]
    assert shown == [f"You said {full} samples. "] and f"You said {full} samples." in text
    assert [e.arguments for e in seen if isinstance(e, ToolCall)] == [{"n": full}]
    assert audio.playback.played == CODES * SAMPLES_PER_CODE  # one reply's audio, nothing speculative
    assert not session.pending_client_calls


def test_a_finished_utterance_plays_its_first_pcm_earlier_with_speculation():
    speech = espeak("Tell me a joke about the moon")
    gains = {}
    for speculate in (False, True, False, True):
        model, ran = Model(prefill_s=0.35), []
        session = session_for(model, ran)
        loop, audio, _, _ = run_loop(session, [silence(0.5), speech], speculate=speculate)
        trace = loop.traces[0]
        assert trace.speculation == ("committed" if speculate else "off")
        assert audio.playback.played == CODES * SAMPLES_PER_CODE
        assert [m.role for m in session.history] == ["human", "assistant"]
        gains.setdefault(speculate, []).append(trace.first_pcm - trace.endpoint)
    # model time 350 ms; speculation started it 300 ms before the endpoint (pause 200 of a 500 ms hangover)
    assert max(gains[True]) < min(gains[False]) - 0.15, gains


def test_a_discarded_speculation_does_not_use_up_a_scripted_reply():
    from voice_loop_support import make_session

    session, backend = make_session([{"text": "First reply.", "speech_codes": list(range(25))},
                                     {"text": "Second reply."}])
    first, second = espeak("What is the weather"), espeak("in Paris tomorrow morning")
    loop, audio, text, seen = run_loop(session, [silence(0.5), first, silence(0.35), second], speculate=True)
    assert loop.speculation.discarded >= 1 and loop.traces[0].speculation == "committed"
    assert "First reply." in text and "Second reply." not in text
    assert len(backend.requests) == 1 and backend.position == 1  # the discarded start left no trace
    assert len(session.history[0].content[0].samples) > len(first) + len(second)


def test_endpointer_pause_carries_what_the_end_would_and_resumes():
    from stepvoice.assistant.endpointing import Endpointer, SpeechEnd, SpeechPause, SpeechResumed

    loud = lambda s: (0.5 * np.sin(np.arange(int(s * 16000)) * 0.3)).astype(np.float32)  # noqa: E731
    energy = lambda frame: 1.0 if np.abs(frame).max() > 0.1 else 0.0  # noqa: E731
    ep = Endpointer(energy, EndpointConfig(silence_ms=500, pause_ms=200))
    events = ep.push(np.concatenate([silence(0.3), loud(0.5), silence(0.3), loud(0.4), silence(0.8)]))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SpeechStart", "SpeechPause", "SpeechResumed", "SpeechPause", "SpeechEnd"]
    first, last, end = events[1], events[3], events[4]
    assert isinstance(end, SpeechEnd) and isinstance(last, SpeechPause) and isinstance(events[2], SpeechResumed)
    assert last.end_t == end.end_t and np.array_equal(last.samples, end.samples)  # commit hears the same audio
    assert first.end_t < end.end_t and len(first.samples) < len(end.samples)
    with pytest.raises(Exception, match="pause_ms"):
        EndpointConfig(silence_ms=300, pause_ms=300)
