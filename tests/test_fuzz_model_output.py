"""Fuzz: 200+ malformed model outputs (random ids, truncated and broken tool calls, stray special ids)
through the real stream decoder and a real Session with tools: no exception, every turn ends with exactly
one TurnEnd, every call gets one answer, and the session still serves a normal turn afterwards."""
from __future__ import annotations

import asyncio
import random

import pytest

from stepvoice.assistant.session import Session
from stepvoice.engine.events import SpeechCodes, TextDelta, ToolCall, ToolResult, TurnEnd, Usage
from stepvoice.engine.stream_decode import EventDecoder
from stepvoice.tools import ToolRegistry, tool

OUTPUTS = 204


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(folder)
    return load_tokenizer(folder)


class DecodingBackend:
    """Plays given id sequences through the real EventDecoder, as the local backend does."""

    def __init__(self, tokenizer, outputs: list[list[int]]):
        self.tokenizer = tokenizer
        self.outputs = outputs
        self.requests = 0

    async def generate(self, messages, options, cancel=None):
        from stepvoice.engine.prompt import build_prompt

        build_prompt(messages, self.tokenizer, options)  # the prompt must always be buildable
        ids = self.outputs.pop(0) if self.outputs else self.tokenizer.encode("All good.")
        self.requests += 1
        dec = EventDecoder(self.tokenizer, options.reply)
        if options.reply == "speech":
            for ev in dec.start_speech():
                yield ev
        for i in ids:
            for ev in dec.push(i):
                yield ev
            await asyncio.sleep(0)
        for ev in dec.finish():
            yield ev
        yield TurnEnd("stop", Usage(completion_tokens=len(ids)), token_ids=tuple(ids))


def outputs(tok, n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    specials = [tok.bot_id, tok.eot_id, tok.audio_start_id, tok.audio_end_id, tok.audio_patch_id,
                tok.tts_start_id, tok.tts_end_id, tok.tts_pad_id, tok.audio_pad_id, tok.id_of("<tool_call>"),
                tok.id_of("</tool_call>"), tok.id_of("<|endoftext|>")]
    call = '<tool_call>function\nget_weather\n{"location": "Paris", "days": [1, 2]}</tool_call>'
    broken = ['<tool_call>function\nget_weather\n{"location": "Par', '<tool_call>function\n\n{}</tool_call>',
              '<tool_call>function\nno_such_tool\n{"a": 1}</tool_call>', '<tool_call>get_weather</tool_call>',
              '<tool_call>function\nget_weather\n[1, 2, 3]</tool_call>', '</tool_call></tool_call><tool_call>',
              '<tool_call>function\nget_weather\n{"location": ' + '"x' * 3000 + '}</tool_call>',
              '<tool_call>function\nget_weather\n{"location": "a"}</tool_call>' * 12]
    out = []
    for i in range(n):
        k = i % 6
        if k == 0:  # uniformly random ids over the whole vocabulary (text, specials, speech codes)
            ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(1, 120))]
        elif k == 1:  # a good call cut anywhere
            full = tok.encode(call)
            ids = full[: rng.randrange(1, len(full))]
        elif k == 2:
            ids = tok.encode(rng.choice(broken))
        elif k == 3:  # text with stray control ids spliced in
            ids = tok.encode("Hello there, the weather is fine today.")
            for _ in range(rng.randrange(1, 6)):
                ids.insert(rng.randrange(len(ids) + 1), rng.choice(specials))
        elif k == 4:  # speech codes and pads without text, with stray ends
            ids = [tok.audio_first_id + rng.randrange(6562) for _ in range(rng.randrange(1, 60))]
            ids += [rng.choice(specials)] + tok.encode("done")
        else:  # partial UTF-8: bytes of a multi-byte character cut off, then ends
            ids = tok.encode("天气很好🌤")[:-1] + [tok.eot_id] + tok.encode("ok")
        out.append(ids)
    return out


def test_malformed_model_outputs_never_break_the_session(tok):
    calls_made = []

    @tool
    def get_weather(location: str, days: list[int] | None = None) -> str:
        """The weather."""
        calls_made.append(location)
        return f"sunny in {location}"

    reg = ToolRegistry()
    reg.add(get_weather)
    backend = DecodingBackend(tok, outputs(tok, OUTPUTS))
    session = Session(backend, tools=reg)

    async def turn(text, reply):
        return [e async for e in session.respond(text, reply=reply)]

    async def go():
        stats = {"turns": 0, "calls": 0, "failed_calls": 0, "speech_codes": 0}
        rng = random.Random(1)
        while backend.outputs:
            events = await turn("what's the weather?", rng.choice(["text", "speech"]))
            ends = [e for e in events if isinstance(e, TurnEnd)]
            assert len(ends) == 1 and events[-1] is ends[0]
            calls = [e for e in events if isinstance(e, ToolCall)]
            results = [e for e in events if isinstance(e, ToolResult)]
            assert {r.call_id for r in results} == {c.id for c in calls}  # every call answered once
            stats["turns"] += 1
            stats["calls"] += len(calls)
            stats["failed_calls"] += sum(not r.ok for r in results)
            stats["speech_codes"] += sum(len(e.codes) for e in events if isinstance(e, SpeechCodes))
            assert all(isinstance(e.text, str) for e in events if isinstance(e, TextDelta))
        final = await turn("and now?", "text")
        return stats, final

    stats, final = asyncio.run(go())
    print(f"{OUTPUTS} malformed outputs over {stats['turns']} turns: {stats['calls']} calls "
          f"({stats['failed_calls']} answered with an error), {stats['speech_codes']} speech codes")
    assert backend.requests >= OUTPUTS
    assert stats["failed_calls"] > 0 and calls_made  # broken calls were refused, good ones ran
    assert "".join(e.text for e in final if isinstance(e, TextDelta)) == "All good."
    assert final[-1].reason == "stop"
