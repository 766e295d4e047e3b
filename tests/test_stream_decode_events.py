"""EventDecoder on hand-built id sequences: whole characters only, TA4 split into
speech text + codes with pads dropped, tool calls withheld from the text and
emitted when they close, think channel, control ids silent."""
from __future__ import annotations

import pytest

from stepvoice.engine.events import SpeechCodes, TextDelta, ToolCall
from stepvoice.engine.prompt import ta4_interleave
from stepvoice.engine.stream_decode import EventDecoder, decode_all
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(d)
    return load_tokenizer(d)


@pytest.fixture(scope="module", params=["think-as-text", "think-tokens"])
def think_tok(request, tmp_path_factory):
    """Both fake layouts: `</think>` as ordinary text (default, like the real checkpoint) or one token."""
    d = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(d, think_tokens=request.param == "think-tokens")
    return load_tokenizer(d)


def texts(events, channel=None):
    return "".join(e.text for e in events if isinstance(e, TextDelta) and (channel is None or e.channel == channel))


def push_each(decoder, ids):
    """[(id, events)] for each pushed id, then ("finish", events)."""
    steps = [(i, decoder.push(i)) for i in ids]
    steps.append(("finish", decoder.finish()))
    return steps


def flat(steps):
    return [e for _, events in steps for e in events]


def test_text_reply_releases_whole_characters(tok):
    text = "Hi 😀 你好, ünïcode 🏯!"
    ids = tok.encode(text) + [tok.eot_id]
    steps = push_each(EventDecoder(tok, "text"), ids)
    events = flat(steps)
    assert all(isinstance(e, TextDelta) and e.channel == "text" for e in events)
    assert texts(events) == text
    assert all("\ufffd" not in e.text for e in events)
    # the emoji really is spread over several ids: some text ids released nothing
    assert any(not evs for i, evs in steps[:-1] if i != tok.eot_id)
    assert len(tok.encode("😀")) > 1


def test_spoken_reply_ta4(tok):
    spoken = "The Great Wall is long."
    codes = list(range(1000, 1000 + 4 * len(tok.encode(spoken)) + 6))  # speech outlasts the text
    # the last group holds 2 codes; the model fills it with 2 speech pads
    ids = (ta4_interleave(tok.encode(spoken), tok.ids_of_codes(codes), tok) + [tok.audio_pad_id] * 2
           + [tok.tts_end_id, tok.eot_id])
    assert tok.tts_pad_id in ids
    d = EventDecoder(tok, "speech")
    events = flat(push_each(d, ids))
    assert texts(events, "speech") == spoken and texts(events, "text") == ""
    got = [c for e in events if isinstance(e, SpeechCodes) for c in e.codes]
    assert got == codes  # pads dropped, order kept
    assert all(1 <= len(e.codes) <= 4 for e in events if isinstance(e, SpeechCodes))
    assert d.speech_text == spoken and d.codes == codes and d.token_ids == ids


def test_text_and_codes_interleave_in_time(tok):
    words = tok.encode("one two three")
    ids = ta4_interleave(words, tok.ids_of_codes(list(range(4 * len(words)))), tok)
    events = decode_all(tok, ids, "speech")
    kinds = [type(e).__name__ for e in events]
    # each text token's group of codes follows it, not all codes at the end
    assert kinds[:4] == ["TextDelta", "SpeechCodes", "TextDelta", "SpeechCodes"]


def test_tool_call_after_tts_end(tok):
    spoken = "让我查一下。"
    call = '<tool_call>function\nget_weather\n{"location": "Beijing"}</tool_call>'
    ids = (ta4_interleave(tok.encode(spoken), tok.ids_of_codes([7] * 8), tok) + [tok.tts_end_id]
           + tok.encode(call) + [tok.eot_id])
    d = EventDecoder(tok, "speech")
    steps = push_each(d, ids)
    events = flat(steps)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments, c.error) for c in calls] == [("get_weather", {"location": "Beijing"}, None)]
    assert texts(events, "speech") == spoken
    assert texts(events, "text") == ""  # nothing of the call leaks as text
    # emitted right when </tool_call> arrives, not at finish
    close_step = next(k for k, (i, _) in enumerate(steps) if i == tok.id_of("</tool_call>"))
    assert any(isinstance(e, ToolCall) for e in steps[close_step][1])
    assert d.tool_calls == calls


def test_tool_call_in_text_with_text_around_and_tags_in_json(tok):
    before, after = "Sure, searching. ", " Done."
    call = '<tool_call>function\nsearch\n{"query": "what is </tool_call> in 中文"}</tool_call>'
    events = decode_all(tok, tok.encode(before + call + after), "text")
    assert texts(events) == before + after
    [c] = [e for e in events if isinstance(e, ToolCall)]
    assert c.name == "search" and c.arguments == {"query": "what is </tool_call> in 中文"}
    assert c.raw == call
    # order: text before, then the call, then text after
    idx = events.index(c)
    assert texts(events[:idx]) == before and texts(events[idx + 1:]) == after


def test_tags_spelled_in_pieces_are_recognised(tok):
    # "<tool_call>" written as several ordinary text tokens instead of the one added token
    pieces = ["Ok <", "tool", "_call>", "function\nget_date_time\n{}", "</", "tool_call", ">", " bye"]
    ids = [i for p in pieces for i in tok.encode(p)]
    assert tok.id_of("<tool_call>") not in ids
    events = decode_all(tok, ids, "text")
    assert texts(events) == "Ok  bye"
    assert [e.name for e in events if isinstance(e, ToolCall)] == ["get_date_time"]


def test_held_back_angle_bracket_is_released(tok):
    d = EventDecoder(tok, "text")
    first = d.push_many(tok.encode("a <"))
    assert texts(first) == "a "  # "<" might start a tag
    second = d.push_many(tok.encode("b"))
    assert texts(second) == "<b"
    assert texts(d.finish()) == ""
    d = EventDecoder(tok, "text")
    d.push_many(tok.encode("x <tool_"))
    assert texts(d.finish()) == "<tool_" and d.text == "x <tool_"


def test_unterminated_call_emitted_at_finish(tok):
    ids = tok.encode('<tool_call>function\nsearch\n{"query": "weather today"}')
    d = EventDecoder(tok, "text")
    assert not any(isinstance(e, ToolCall) for e in d.push_many(ids))
    [c] = [e for e in d.finish() if isinstance(e, ToolCall)]
    assert c.name == "search" and c.arguments == {"query": "weather today"} and c.error is None
    d = EventDecoder(tok, "text")
    d.push_many(tok.encode('<tool_call>function\nsearch\n{"query": "wea'))
    [c] = [e for e in d.finish() if isinstance(e, ToolCall)]
    assert c.error and "cut off" in c.error


def test_two_calls_back_to_back(tok):
    text = ('<tool_call>function\nget_date_time\n{}</tool_call>'
            '<tool_call>function\nget_weather\n{"location": "Oslo"}</tool_call>')
    events = decode_all(tok, tok.encode(text), "text")
    assert [(e.name, e.arguments) for e in events if isinstance(e, ToolCall)] == [
        ("get_date_time", {}), ("get_weather", {"location": "Oslo"})]
    assert texts(events) == ""


def test_think_reply(think_tok):
    tok = think_tok
    thought = "The user greets me.\nI should greet back.\n"
    ids = tok.encode(thought) + tok.encode("</think>") + tok.encode("\n\nHello!")
    d = EventDecoder(tok, "think")
    events = flat(push_each(d, ids))
    assert texts(events, "think") == thought
    assert texts(events, "text") == "Hello!"  # the blank line after </think> is layout
    assert d.think_text == thought


def test_think_resume_ids_lead_into_speech(think_tok):
    tok = think_tok
    # thought, </think>, "\n\n", then what the second phase pushes: start_speech() and TA4
    ids = (tok.encode("plan the answer") + tok.encode("</think>") + tok.encode("\n\n") + [tok.tts_start_id]
           + ta4_interleave(tok.encode("Sure"), tok.ids_of_codes([3, 4, 5]), tok) + [tok.tts_end_id])
    events = decode_all(tok, ids, "think")
    kinds = [(type(e).__name__, getattr(e, "channel", None)) for e in events]
    runs = [k for n, k in enumerate(kinds) if n == 0 or kinds[n - 1] != k]
    assert runs[:3] == [("TextDelta", "think"), ("TextDelta", "speech"), ("SpeechCodes", None)]
    assert ("TextDelta", "text") not in kinds and ("TextDelta", "think") not in runs[1:]
    assert texts(events, "think") == "plan the answer" and texts(events, "speech") == "Sure"


def test_think_markers_by_id_whatever_their_text(tok):
    import copy

    other = copy.copy(tok)
    other.think_end_id = tok.encode("!")[0]  # a checkpoint whose </think> id decodes differently
    ids = tok.encode("deep thought") + [other.think_end_id] + tok.encode("answer")
    events = decode_all(other, ids, "think")
    assert texts(events, "think") == "deep thought" and texts(events, "text") == "answer"


def test_think_block_inside_text_reply(think_tok):
    tok = think_tok
    ids = tok.encode("<think>") + tok.encode("hmm") + tok.encode("</think>") + tok.encode("Answer")
    events = decode_all(tok, ids, "text")
    assert texts(events, "think") == "hmm" and texts(events, "text") == "Answer"


def test_start_speech_for_think_continuation(tok):
    d = EventDecoder(tok, "text")
    assert d.start_speech() == []
    ids = ta4_interleave(tok.encode("Yes"), tok.ids_of_codes([1, 2, 3, 4, 5]), tok) + [tok.tts_end_id]
    events = d.push_many(ids) + d.finish()
    assert texts(events, "speech") == "Yes" and d.codes == [1, 2, 3, 4, 5]


def test_text_pending_at_channel_switch_stays_on_its_channel(tok):
    emoji = tok.encode("😀")
    d = EventDecoder(tok, "speech")
    events = d.push_many(tok.encode("ok <") + emoji[:2] + [tok.tts_end_id] + tok.encode("after"))
    events += d.finish()
    speech = texts(events, "speech")
    assert speech.startswith("ok <")  # the held "<" is released before the switch
    assert texts(events, "text") == "after"


def test_control_ids_emit_nothing(tok):
    d = EventDecoder(tok, "text")
    for i in (tok.bot_id, tok.eot_id, tok.endoftext_id, tok.audio_start_id, tok.audio_patch_id,
              tok.audio_end_id, tok.tts_pad_id, tok.audio_pad_id):
        assert d.push(i) == []
    assert d.finish() == []
    assert d.finish() == []  # idempotent


def test_codes_outside_tts_block_still_become_codes(tok):
    events = decode_all(tok, tok.ids_of_codes([10, 11]) + tok.encode("x"), "text")
    assert events == [SpeechCodes((10, 11)), TextDelta("x", "text")]


def test_invalid_utf8_is_released_not_held_forever(tok):
    lone = tok.encode("😀")[:1]  # the first byte of a 4-byte character, alone
    d = EventDecoder(tok, "text")
    held = d.push_many(lone)
    assert held == []
    out = d.finish()
    assert texts(out) == "\ufffd"
    d = EventDecoder(tok, "text")
    events = d.push_many(lone * 8)  # never completes: released after a bounded wait
    assert texts(events)


def test_bad_reply_mode(tok):
    with pytest.raises(ValueError):
        EventDecoder(tok, "sing")


def summary(events):
    """What a consumer keeps: text per channel, calls, codes (delta boundaries do not matter)."""
    return (texts(events, "text"), texts(events, "speech"), texts(events, "think"),
            [(e.name, e.arguments, e.error) for e in events if isinstance(e, ToolCall)],
            [c for e in events if isinstance(e, SpeechCodes) for c in e.codes])


def test_results_do_not_depend_on_token_boundaries(tok):
    import random

    text = ('Let me check 天气 😀 for you. <tool_call>function\nget_weather\n{"location": "São Paulo", '
            '"note": "a </tool_call> inside"}</tool_call> Then <think>hmm, 想一想</think>done <b> & <tool_ ok.')
    reference = summary(decode_all(tok, tok.encode(text), "text"))
    assert reference[3] == [("get_weather", {"location": "São Paulo", "note": "a </tool_call> inside"}, None)]
    assert reference[2] == "hmm, 想一想"
    rng = random.Random(0)
    for _ in range(25):
        cuts = sorted(rng.sample(range(1, len(text)), 12))
        pieces = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
        ids = [i for p in pieces for i in tok.encode(p)]
        assert summary(decode_all(tok, ids, "text")) == reference, pieces
