"""Spoken replies: speech codes -> AudioChunks with the current voice; timbre_rag switches it; barge-in truncation."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from stepvoice.assistant.history import History, ReplyRecord
from stepvoice.assistant.session import Session
from stepvoice.engine.backends.scripted import ScriptedBackend
from stepvoice.engine.events import AudioChunk, SpeechCodes, TextDelta, ToolResult, TurnEnd, VoiceChanged
from stepvoice.engine.messages import Speech
from stepvoice.engine.prompt import ta4_interleave
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer
from stepvoice.tools import load_registry

SAMPLES_PER_CODE = 960  # 24 kHz / 25 codes per second


class RecordingToken2Wav:
    """Stands in for engine.token2wav.Token2Wav: each stream's PCM is filled with its voice prompt's value,
    so a chunk tells which voice made it."""

    sample_rate = 24000

    def __init__(self):
        self.streams: list["RecordingStream"] = []
        self.prepared = 0

    def prepare_voice(self, wav):
        self.prepared += 1
        return 0.1  # the default clip's "prompt"

    def stream(self, voice):
        s = RecordingStream(voice)
        self.streams.append(s)
        return s


class RecordingStream:
    def __init__(self, voice):
        self.voice = voice
        self.codes: list[int] = []
        self.finished = False

    def push(self, codes):
        self.codes += list(codes)
        return np.full(len(codes) * SAMPLES_PER_CODE, self.voice, dtype=np.float32)

    def finish(self):
        self.finished = True
        return np.full(SAMPLES_PER_CODE // 2, self.voice, dtype=np.float32)


@dataclass
class Match:
    name: str
    description: str
    score: float


class TwoVoiceBank:
    """Duck-typed voice bank with a default voice and a deep one; prompts are numbers."""

    prompts = {"default": 0.25, "deep": 0.75}

    def __init__(self):
        self.queries: list[str] = []

    def find(self, query: str) -> Match:
        self.queries.append(query)
        return Match("deep", "a deep calm male voice", 0.9)

    def get(self, name: str):
        if name not in self.prompts:
            raise KeyError(name)
        return name

    def prompt(self, name: str):
        return self.prompts[name]


def run(session, user_input, **kw):
    async def go():
        return [e async for e in session.respond(user_input, **kw)]

    return asyncio.run(go())


def test_spoken_reply_becomes_audio_chunks_and_history_keeps_speech():
    t2w = RecordingToken2Wav()
    backend = ScriptedBackend.from_data({"replies": [{"text": "Hello there", "speech_codes": list(range(10))}]})
    session = Session(backend, token2wav=t2w)
    events = run(session, "hi", reply="speech")
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert chunks and all(c.sample_rate == 24000 for c in chunks)
    assert sum(len(c.pcm) for c in chunks) == 10 * SAMPLES_PER_CODE + SAMPLES_PER_CODE // 2
    assert t2w.prepared == 1 and t2w.streams[0].codes == list(range(10)) and t2w.streams[0].finished
    assert backend.requests[0][1].reply == "speech"
    (speech,) = session.history[-1].content
    assert isinstance(speech, Speech) and speech.text == "Hello there" and speech.codes == tuple(range(10))
    # An AudioChunk follows the SpeechCodes that made it.
    first_codes = next(i for i, e in enumerate(events) if isinstance(e, SpeechCodes))
    assert isinstance(events[first_codes + 1], AudioChunk)


def test_timbre_rag_switches_the_voice_for_later_speech():
    t2w = RecordingToken2Wav()
    bank = TwoVoiceBank()
    backend = ScriptedBackend.from_data({"replies": [
        {"text": "One moment", "speech_codes": [1, 2, 3, 4, 5, 6, 7, 8],
         "tool_calls": [{"name": "timbre_rag", "arguments": {"query": "a deep male voice"}}]},
        {"text": "Is this better?", "speech_codes": [9, 10, 11, 12]},
        {"text": "Still me.", "speech_codes": [13, 14, 15, 16]},
    ]})
    session = Session(backend, tools=load_registry(), voice_bank=bank, token2wav=t2w)
    assert session.voice == "default"
    events = run(session, "please use a deeper voice", reply="speech")
    (changed,) = [e for e in events if isinstance(e, VoiceChanged)]
    assert changed.name == "deep" and session.voice == "deep"
    assert bank.queries == ["a deep male voice"]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.ok and "deep" in result.content
    at = events.index(changed)
    before = {float(c.pcm[0]) for c in events[:at] if isinstance(c, AudioChunk)}
    after = {float(c.pcm[0]) for c in events[at:] if isinstance(c, AudioChunk)}
    assert before == {0.25} and after == {0.75}
    # The next turn keeps the new voice.
    later = run(session, "and now?", reply="speech")
    assert {float(c.pcm[0]) for c in later if isinstance(c, AudioChunk)} == {0.75}
    assert [s.voice for s in t2w.streams] == [0.25, 0.75, 0.75]


def test_voice_given_at_start_is_used():
    t2w = RecordingToken2Wav()
    backend = ScriptedBackend.from_data({"replies": [{"text": "Hi", "speech_codes": [1, 2, 3, 4]}]})
    session = Session(backend, voice_bank=TwoVoiceBank(), token2wav=t2w, voice="deep")
    events = run(session, "hi", reply="speech")
    assert {float(c.pcm[0]) for c in events if isinstance(c, AudioChunk)} == {0.75}


def test_truncate_keeps_only_what_was_heard():
    backend = ScriptedBackend.from_data({"replies": [
        {"text": "Hello there my friend", "speech_codes": list(range(16))},
        "ok",
    ]})
    session = Session(backend)
    run(session, "hi", reply="speech")
    new = session.truncate_last_reply(0.2)  # 5 codes heard: the first two words had started
    (speech,) = new.content
    assert speech.codes == tuple(range(5)) and speech.text == "Hello there"
    assert session.history[-1] is new
    run(session, "sorry, go on")
    assert backend.requests[1][0][-2].content[0].codes == tuple(range(5))


def test_truncate_edge_cases():
    backend = ScriptedBackend.from_data({"replies": [{"text": "Hello there", "speech_codes": list(range(8))}] * 2})
    session = Session(backend)
    run(session, "hi", reply="speech")
    whole = session.history[-1]
    assert session.truncate_last_reply(10.0) is whole  # all heard: unchanged
    assert session.truncate_last_reply(0.0) is None  # nothing heard: the reply is gone
    assert [m.role for m in session.history] == ["human"]
    assert session.truncate_last_reply(1.0) is None  # no spoken reply to the latest user turn


def test_truncate_on_raw_ids_cuts_after_the_last_heard_code(tmp_path):
    write_fake_tokenizer(tmp_path)
    tok = load_tokenizer(tmp_path)
    text_ids = tok.encode("Hello there my friend")
    codes = list(range(100, 116))
    body = ta4_interleave(text_ids, [tok.audio_first_id + c for c in codes], tok)
    ids = tuple([*body, tok.tts_end_id, tok.eot_id])
    history = History()
    record = ReplyRecord()
    record.add(TextDelta("Hello there my friend", "speech"))
    record.add(SpeechCodes(tuple(codes)))
    record.add(TurnEnd("stop", token_ids=ids))
    msg = history.add_reply(record, tok, "speech")
    assert msg.content[0].token_ids == ids[:-1]  # <|EOT|> is the prompt builder's
    new = history.truncate_last_reply(6 / 25, tok)  # 6 codes heard
    (speech,) = new.content
    assert speech.codes == tuple(codes[:6])
    kept = list(speech.token_ids)
    assert kept[-1] == tok.tts_end_id
    assert [tok.code_of(i) for i in kept if tok.code_of(i) is not None] == codes[:6]
    assert kept[:-1] == body[: body.index(tok.audio_first_id + codes[6])]
    assert speech.text == tok.decode_text([i for i in kept if tok.is_text(i)])
    assert speech.text and len(speech.text) < len("Hello there my friend")


def test_bad_audio_input_is_refused_with_one_clear_error():
    session = Session(ScriptedBackend.from_data({"replies": ["x"]}))
    from stepvoice.engine.errors import AudioError

    for bad, words in [(np.zeros(0, np.float32), "empty"), (np.array([0.0, np.nan], np.float32), "NaN"),
                       (np.zeros((2, 10), np.float32), "mono")]:
        with pytest.raises(AudioError, match=words):
            run(session, bad)
    assert session.history == []


def two_segment_session():
    backend = ScriptedBackend.from_data({"replies": [
        {"text": "One moment please", "speech_codes": list(range(8)),
         "tool_calls": [{"name": "get_date_time"}]},
        {"text": "It is noon", "speech_codes": list(range(100, 112))},
    ]})
    session = Session(backend, tools=load_registry())
    run(session, "what time is it", reply="speech")
    assert [m.role for m in session.history] == ["human", "assistant", "input", "assistant"]
    return session


def test_truncate_counts_played_audio_across_the_segments_of_a_tool_round():
    session = two_segment_session()
    kept = session.truncate_last_reply(0.4)  # 10 codes: all 8 of the first segment, 2 of the second
    assert [m.role for m in session.history] == ["human", "assistant", "input", "assistant"]
    assert session.history[1].content[0].codes == tuple(range(8))
    assert kept is session.history[3] and kept.content[0].codes == (100, 101) and kept.content[0].text == "It"


def test_truncate_inside_the_first_segment_keeps_the_call_and_drops_the_unheard_answer():
    session = two_segment_session()
    kept = session.truncate_last_reply(0.2)  # 5 codes, all in the first segment
    assert [m.role for m in session.history] == ["human", "assistant", "input"]
    (speech,) = session.history[1].content
    assert kept is session.history[1]
    assert speech.codes == tuple(range(5)) and speech.text == "One moment"
    assert speech.tail_text.startswith("<tool_call>function\nget_date_time")  # its result is still in history


def test_a_synthesis_failure_mutes_the_reply_but_the_text_goes_on():
    class Broken(RecordingToken2Wav):
        def stream(self, voice):
            s = super().stream(voice)
            s.push = lambda codes: (_ for _ in ()).throw(RuntimeError("vocoder exploded"))
            return s

    backend = ScriptedBackend.from_data({"replies": [{"text": "Hello there friend", "speech_codes": list(range(12))},
                                                     {"text": "Again", "speech_codes": [1, 2, 3, 4]}]})
    t2w = Broken()
    session = Session(backend, token2wav=t2w)
    events = run(session, "hi", reply="speech")
    assert not [e for e in events if isinstance(e, AudioChunk)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello there friend"
    assert events[-1].reason == "stop" and "vocoder exploded" in session.speech_out.error
    assert len(t2w.streams) == 1  # muted for the rest of the segment, not retried per code group
    run(session, "again", reply="speech")
    assert len(t2w.streams) == 2  # the next reply tries again


def test_a_backend_that_raises_ends_the_turn_with_an_error_and_keeps_history():
    class Failing(ScriptedBackend):
        async def generate(self, messages, options, cancel=None):
            yield TextDelta("Partial ")
            raise ConnectionResetError("engine went away")

    session = Session(Failing([]))
    events = run(session, "hi")
    assert isinstance(events[-1], TurnEnd) and events[-1].reason == "error"
    assert "engine went away" in events[-1].error
    assert session.history[-1].plain_text == "Partial "


def test_think_replies_keep_the_spoken_answer_but_not_the_thought():
    class Thinker(ScriptedBackend):
        async def generate(self, messages, options, cancel=None):
            self.requests.append((list(messages), options))
            yield TextDelta("The user greets me; answer warmly.", "think")
            yield TextDelta("Hello!", "speech")
            yield SpeechCodes((1, 2, 3, 4))
            yield TurnEnd("stop", token_ids=(9, 9, 9))

    backend = Thinker([])
    session = Session(backend, task="think")
    events = run(session, "hi")
    assert backend.requests[0][1].reply == "think"
    assert backend.requests[0][0][0].plain_text.startswith("你的名字叫小跃")
    assert [e.channel for e in events if isinstance(e, TextDelta)] == ["think", "speech"]
    (speech,) = session.history[-1].content
    assert speech.text == "Hello!" and speech.codes == (1, 2, 3, 4)
    # a Think reply's ids are its second phase only (the local backend's TurnEnd), kept verbatim
    # as the official example keeps them (examples-think.py lines 24-33)
    assert speech.token_ids == (9, 9, 9)


def test_a_timed_out_tool_is_followed_by_a_spoken_answer_not_silence():
    from stepvoice.tools import ToolRegistry, tool

    @tool(timeout=0.1)
    async def get_weather(location: str) -> str:
        """Weather."""
        import asyncio as aio

        await aio.sleep(5)
        return "never"

    registry = ToolRegistry()
    registry.add(get_weather)
    t2w = RecordingToken2Wav()
    backend = ScriptedBackend.from_data({"replies": [
        {"tool_calls": [{"name": "get_weather", "arguments": {"location": "Paris"}}]},
        {"text": "Sorry, the weather service did not answer.", "speech_codes": list(range(20))},
    ]})
    session = Session(backend, tools=registry, token2wav=t2w)
    events = run(session, "weather in Paris?", reply="speech")
    (failed,) = [e for e in events if isinstance(e, ToolResult)]
    assert not failed.ok and "timed out" in failed.content
    after = events[events.index(failed):]
    assert sum(len(e.pcm) for e in after if isinstance(e, AudioChunk)) >= 20 * SAMPLES_PER_CODE
    fed, options = backend.requests[1]
    assert options.reply == "speech" and "timed out" in fed[-1].plain_text


class WarmingToken2Wav(RecordingToken2Wav):
    """Also records which voice prompts were warmed ahead of a reply."""

    def __init__(self):
        super().__init__()
        self.warmed: list = []

    def warm(self, voice):
        self.warmed.append(voice)


def test_the_voice_is_prepared_before_the_first_reply_and_again_after_a_switch():
    t2w = WarmingToken2Wav()
    backend = ScriptedBackend.from_data({"replies": [
        {"text": "Switching", "tool_calls": [{"name": "timbre_rag", "arguments": {"query": "deep"}}]},
        {"text": "Now deep.", "speech_codes": [1, 2, 3, 4]},
    ]})
    session = Session(backend, tools=load_registry(), voice_bank=TwoVoiceBank(), token2wav=t2w)

    async def go():
        await session.prepare_speech()
        assert t2w.warmed == [0.25] and t2w.streams == []  # ready before anyone spoke
        events = [e async for e in session.respond("a deeper voice please", reply="speech")]
        await asyncio.sleep(0.05)  # the background warm-up of the new voice
        return events

    events = asyncio.run(go())
    assert any(isinstance(e, VoiceChanged) and e.name == "deep" for e in events)
    assert t2w.warmed[0] == 0.25 and 0.75 in t2w.warmed[1:]
