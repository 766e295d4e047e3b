"""LocalBackend on the fake checkpoint: prompt -> worker-thread decoding -> events."""
from __future__ import annotations

import asyncio
import copy

import numpy as np
import pytest

from stepvoice.engine.backends import load_backend
from stepvoice.engine.backends.local import LocalBackend
from stepvoice.engine.errors import AudioError, StepvoiceError
from stepvoice.engine.events import TextDelta, TurnEnd
from stepvoice.engine.generate import Generation
from stepvoice.engine.messages import Audio, Message, Text
from stepvoice.engine.options import GenerationOptions
from scripted_logits import ScriptedLogits


@pytest.fixture(scope="module")
def backend(fake_checkpoint):
    return LocalBackend.from_spec(fake_checkpoint, device="cpu", dtype="float32")


def run(backend, messages, options, cancel=None, on_event=None) -> list:
    async def go():
        out = []
        async for ev in backend.generate(messages, options, cancel):
            out.append(ev)
            if on_event:
                on_event(ev, out)
        return out

    return asyncio.run(go())


HELLO = [Message.text("system", "You are a helpful assistant."), Message.text("human", "hello there")]
GREEDY = GenerationOptions(max_new_tokens=12, temperature=0, repetition_penalty=1.0)


def reference_ids(backend, messages, options, n) -> list[int]:
    from stepvoice.engine.prompt import build_prompt

    p = build_prompt(messages, backend.tokenizer, options)
    gen = Generation(backend.model, p.ids, p.mels, p.audio_starts, options)
    return [gen.next_token() for _ in range(n)]


def test_load_backend_dispatches_to_local(fake_checkpoint):
    b = load_backend(str(fake_checkpoint), device="cpu", dtype="float32")
    assert isinstance(b, LocalBackend) and b.model.dtype.is_floating_point


def test_events_end_with_one_turn_end_and_match_generation(backend):
    events = run(backend, HELLO, GREEDY)
    ends = [e for e in events if isinstance(e, TurnEnd)]
    assert len(ends) == 1 and events[-1] is ends[0]
    end = ends[0]
    assert end.reason == "length" and end.usage.completion_tokens == 12
    assert list(end.token_ids) == reference_ids(backend, HELLO, GREEDY, 12)
    from stepvoice.engine.prompt import build_prompt

    assert backend.last_prompt_ids == build_prompt(HELLO, backend.tokenizer, GREEDY).ids
    assert end.usage.prompt_tokens == len(backend.last_prompt_ids)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == backend.tokenizer.decode_text(end.token_ids)


def test_stops_on_eot(backend):
    ids = reference_ids(backend, HELLO, GREEDY, 12)
    stop = ids[4]
    b = LocalBackend(backend.model, copy.copy(backend.tokenizer))
    b.tokenizer.eot_id = stop  # make the fifth greedy id the end of turn
    end = run(b, HELLO, GREEDY)[-1]
    first = ids.index(stop)
    assert end.reason == "stop" and list(end.token_ids) == ids[:first]
    assert end.usage.completion_tokens == first + 1


def test_cancel_between_tokens(backend):
    cancel = asyncio.Event()
    opts = GenerationOptions(max_new_tokens=500, temperature=0)

    def on_event(ev, out):
        cancel.set()

    events = run(backend, HELLO, opts, cancel, on_event)
    assert events[-1].reason == "cancelled"
    assert events[-1].usage.completion_tokens < 100


def test_event_loop_stays_free(backend):
    async def go():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        n = 0
        async for _ in backend.generate(HELLO, GenerationOptions(max_new_tokens=20, temperature=0)):
            n += 1
        done = True
        await task
        return ticks

    assert asyncio.run(go()) >= 10


def test_audio_input_reaches_the_model(backend):
    t = np.arange(16000 * 2) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    with_audio = [HELLO[0], Message("human", [Audio(samples)])]
    end = run(backend, with_audio, GREEDY)[-1]
    assert end.usage.audio_seconds == pytest.approx(2.0, abs=0.05)
    assert backend.tokenizer.audio_patch_id in backend.last_prompt_ids
    assert list(end.token_ids) == reference_ids(backend, with_audio, GREEDY, 12)
    # The audio itself (not only its placeholder count) changes what the model computes.
    from stepvoice.engine.prompt import build_prompt

    silent = [HELLO[0], Message("human", [Audio(np.zeros_like(samples) + 1e-3)])]
    first_logits = []
    for msgs in (with_audio, silent):
        p = build_prompt(msgs, backend.tokenizer, GREEDY)
        gen = Generation(backend.model, p.ids, p.mels, p.audio_starts, GREEDY, keep_logits=True)
        gen.next_token()
        first_logits.append(gen.logits_history[0])
    assert float((first_logits[0] - first_logits[1]).abs().max()) > 1e-4


def test_bad_input_raises_before_any_event(backend):
    bad = [Message("human", [Audio(np.full(16000, np.nan, dtype=np.float32))])]
    with pytest.raises(AudioError):
        run(backend, bad, GREEDY)
    with pytest.raises(StepvoiceError, match="not found"):
        LocalBackend.from_spec("/nonexistent/checkpoint/dir", device="cpu")


def test_text_only_message_helper(backend):
    msgs = [Message("human", [Text("hi")])]
    end = run(backend, msgs, GenerationOptions(max_new_tokens=3, temperature=0))[-1]
    assert len(end.token_ids) == 3


# Think mode end to end: tests/test_conformance_think.py


def test_model_failure_ends_the_turn_with_error(backend):
    tok = backend.tokenizer

    class Failing(ScriptedLogits):
        def __call__(self, *a, **kw):
            if len(self.calls) == 3:
                raise RuntimeError("device lost")
            return super().__call__(*a, **kw)

    script = tok.encode("abcdef")
    b = LocalBackend(Failing(backend.model, script), tok)
    events = run(b, HELLO, GenerationOptions(max_new_tokens=20, temperature=0))
    end = events[-1]
    assert isinstance(end, TurnEnd) and end.reason == "error" and "device lost" in end.error
    assert list(end.token_ids) == script[:3]
    assert sum(isinstance(e, TurnEnd) for e in events) == 1
