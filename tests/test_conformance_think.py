"""Think mode end to end through the LocalBackend's decoding path, on both fake tokenizer layouts.

The model is replaced by a scripted stand-in (each model call's logits pick the
next id of a script), so the ids, the stop on the decoded text `</think>`, the
second-phase prompt and the history ids can be checked exactly. The official
rules (stepfun-ai/Step-Audio2 at 7c58630):
- examples-think.py line 12: the reply opens with "\\n<think>\\n" (no <|EOT|>);
- line 13: phase 1 stops on the stop STRING '</think>' (not a token id);
- stepaudio2.py line 54: the returned ids drop the last generated id; line 55: text ids < 151688;
- examples-think.py line 16: the opening becomes "\\n<think>\\n" + thought + ">\\n\\n<tts_start>",
  one string, tokenized as one piece (stepaudio2.py lines 103-105 and 21);
- line 17: phase 2 is a new generate() call over that prompt;
- lines 24-33: history keeps "<tts_start>" + the raw phase-2 ids (EOT dropped, line 54), not the thought.
"""
from __future__ import annotations

import asyncio

import pytest
import torch

from stepvoice.assistant.history import ReplyRecord
from stepvoice.engine.backends.local import LocalBackend
from stepvoice.engine.events import SpeechCodes, TextDelta, TurnEnd
from stepvoice.engine.messages import Message
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.prompt import build_prompt
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer
from scripted_logits import ScriptedLogits, ScriptedOverModel

HELLO = [Message.text("system", "You are a helpful assistant."), Message.text("human", "hello there")]
THINK = GenerationOptions(max_new_tokens=60, temperature=0, reply="think")


@pytest.fixture(scope="module")
def model(fake_checkpoint):
    return LocalBackend.from_spec(fake_checkpoint, device="cpu", dtype="float32").model


@pytest.fixture(scope="module", params=["think-as-text", "think-tokens"])
def tok(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(folder, think_tokens=request.param == "think-tokens")
    return load_tokenizer(folder)


def run(backend, messages, options):
    async def go():
        return [e async for e in backend.generate(messages, options)]

    return asyncio.run(go())


def official_pieces_ids(tok, messages, opening: str) -> list[int]:
    """The official StepAudio2.apply_chat_template + tokenization (stepaudio2.py lines 94-127, 17-26)
    for text-only messages: one string per message, the open assistant turn without <|EOT|>."""
    ids: list[int] = []
    for m in messages:
        ids += tok.encode(f"<|BOT|>{m.role}\n{m.plain_text}<|EOT|>")
    return ids + tok.encode(f"<|BOT|>assistant\n{opening}")


def spoken_answer(tok, text: str, codes: list[int]) -> list[int]:
    """A TA4 answer as the model writes it: 1 text id + 4 speech ids per group, then <tts_end>."""
    t = tok.encode(text)
    out: list[int] = []
    for g in range(max(len(t), (len(codes) + 3) // 4)):
        out.append(t[g] if g < len(t) else tok.tts_pad_id)
        out += tok.ids_of_codes(codes[4 * g: 4 * g + 4])
    return out + [tok.tts_end_id]


def test_think_end_to_end(model, tok):
    thought = "The user says hello.\nGreet back briefly."
    close = tok.encode("</think>")  # one id (think-tokens) or several text ids (think-as-text)
    phase1 = tok.encode(thought) + close
    codes = [11, 12, 13, 14, 15, 16]
    phase2 = spoken_answer(tok, "Hi!", codes)
    fake = ScriptedLogits(model, phase1 + phase2 + [tok.eot_id])
    backend = LocalBackend(fake, tok)
    events = run(backend, HELLO, THINK)
    end = events[-1]
    assert isinstance(end, TurnEnd) and end.reason == "stop"

    # phase 1 read the official opening
    assert fake.calls[0] == official_pieces_ids(tok, HELLO, "\n<think>\n")
    # phase 2: a new prompt, the official string "\n<think>\n" + thought-with-last-id-dropped + ">\n\n<tts_start>"
    n1 = len(phase1)
    kept = tok.decode([i for i in phase1[:-1] if i < 151688])
    if len(close) > 1:  # the real layout: the dropped id is ">", exactly what the example appends back
        assert tok.decode(close[-1:]) == ">" and kept.endswith("</think")
        official_text = "\n<think>\n" + kept + ">\n\n<tts_start>"
    else:  # `</think>` is one id: dropping it and appending ">" would break the tag; the tag is restored
        official_text = "\n<think>\n" + kept + "</think>\n\n<tts_start>"
    second = official_pieces_ids(tok, HELLO, official_text)
    assert fake.calls[n1] == second and backend.last_prompt_ids == second
    assert second == build_prompt(HELLO, tok, THINK, thought=thought).ids
    # and nothing of phase 1 after the stop was generated
    assert len(fake.calls) == n1 + len(phase2) + 1

    think = "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == "think")
    speech = "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == "speech")
    assert think == thought and speech == "Hi!"
    assert not [e for e in events if isinstance(e, TextDelta) and e.channel == "text"]
    assert [c for e in events if isinstance(e, SpeechCodes) for c in e.codes] == codes

    # history: the raw phase-2 ids, without the thought and without <|EOT|>
    assert list(end.token_ids) == phase2
    record = ReplyRecord()
    for e in events:
        record.add(e)
    msg = record.message(tok, reply="think")
    nxt = build_prompt([*HELLO, msg, Message.text("human", "and?")], tok, GenerationOptions(reply="speech")).ids
    official_history = (tok.encode("<|BOT|>assistant\n") + tok.encode("<tts_start>") + phase2
                        + tok.encode("<|EOT|>"))
    start = len(official_pieces_ids(tok, HELLO, "")) - len(tok.encode("<|BOT|>assistant\n"))
    assert nxt[start:start + len(official_history)] == official_history
    assert end.usage.completion_tokens == n1 + len(phase2) + 1
    assert end.usage.prompt_tokens == len(fake.calls[0]) + len(second)


def test_think_second_phase_reuses_the_first_phase_cache(model, tok):
    """With a session's prefix cache, phase 2 runs only the ids after what phase 1 left in the KV
    cache (prompt + thought, without the id that ended it), and the model sees the same logits as
    when phase 2 is prefilled from scratch."""
    thought = "The user says hello.\nGreet back briefly."
    phase1 = tok.encode(thought) + tok.encode("</think>")
    script = phase1 + spoken_answer(tok, "Hi!", [11, 12, 13, 14]) + [tok.eot_id]
    reused, fresh = ScriptedOverModel(model, script), ScriptedOverModel(model, script)
    backend = LocalBackend(reused, tok)

    async def go():
        return [e async for e in backend.generate(HELLO, THINK, prefix=backend.new_prefix_cache())]

    end = asyncio.run(go())[-1]
    run(LocalBackend(fresh, tok), HELLO, THINK)
    n1 = len(phase1)
    first, second = fresh.calls[0], fresh.calls[n1]  # each phase's whole prompt, prefilled
    held = first + phase1[:-1]  # what phase 1 ran through the model
    shared = 0
    while shared < min(len(held), len(second)) and held[shared] == second[shared]:
        shared += 1
    cached = min(shared, len(second) - 1)
    assert cached > len(first)  # the prompt and part of the thought
    assert end.usage.cached_tokens == cached
    assert reused.calls[:n1] == fresh.calls[:n1]
    assert reused.calls[n1] == second[cached:]  # only the new ids run
    for a, b in zip(reused.real[n1:], fresh.real[n1:]):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    assert [len(c) for c in reused.calls[n1 + 1:]] == [1] * (len(reused.calls) - n1 - 1)


class PieceTokenizer:
    """Ids are indexes into a list of strings (enough for ThinkEnd: decode and text_limit)."""

    text_limit = 151688

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)


@pytest.mark.parametrize("pieces, stop_at, thought", [
    (["plan", "</", "think", ">"], 3, "plan"),  # the real layout: the last id is ">"
    (["plan", "</thi", "nk>\n\n", "more"], 2, "plan"),  # the closing id overhangs the tag
    (["a</think", "> b"], 1, "a"),
    (["x", "<", "/think", "ing", ">"], None, None),  # "</thinking>" is not the tag
])
def test_think_end_is_the_first_id_completing_the_text(pieces, stop_at, thought):
    """Like transformers' StopStringCriteria: the stop is the id whose text completes `</think>`."""
    from stepvoice.engine.stream_decode import ThinkEnd

    watch = ThinkEnd(PieceTokenizer(pieces))
    hits = [watch.push(i) for i in range(len(pieces))]
    assert (hits.index(True) if True in hits else None) == stop_at
    if thought is not None:
        assert watch.thought == thought


def test_think_without_close_ends_as_text(model, tok):
    """No `</think>` before <|EOT|>: one phase, all of it thought, no second prompt."""
    fake = ScriptedLogits(model, tok.encode("just thinking") + [tok.eot_id])
    end = run(LocalBackend(fake, tok), HELLO, THINK)[-1]
    assert end.reason == "stop" and len(fake.calls) == len(tok.encode("just thinking")) + 1
