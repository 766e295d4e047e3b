"""Prefix reuse across turns (engine.prefix_cache) on the fake checkpoint.

A 6-turn greedy conversation (spoken and typed turns, a tool call, a barge-in
truncation, a compaction) gives the same ids with reuse on and off; with reuse
on, each generation takes from the kept cache exactly the ids its prompt
shares with what the previous generation ran (previous prompt + reply ids).
"""
from __future__ import annotations

import asyncio

import pytest
import torch

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.session import Session
from stepvoice.engine.events import SpeechCodes, TextDelta, ToolCall, TurnEnd, Usage
from stepvoice.engine.prefix_cache import PrefixCache
from stepvoice.tools import ToolRegistry, tool

from voice_loop_support import espeak

MAX_NEW = 16


@pytest.fixture(scope="module")
def local(fake_checkpoint):
    from stepvoice.engine.backends.local import LocalBackend

    return LocalBackend.from_spec(str(fake_checkpoint), device="cpu")


class Recorder:
    """The local backend, recording every generation that could use the prefix cache; a request
    whose last turn asks for the time is answered with a scripted tool call instead (random weights
    do not call tools)."""

    def __init__(self, local):
        self.local = local
        self.tokenizer = local.tokenizer
        self.runs: list[dict] = []  # one per local generation with the session's prefix

    def new_prefix_cache(self, enabled: bool = True) -> PrefixCache:
        return self.local.new_prefix_cache(enabled)

    async def generate(self, messages, options, cancel=None, *, prefix=None):
        if messages[-1].role == "human" and "time" in messages[-1].plain_text:
            yield TextDelta("Let me look.", "text")
            yield ToolCall("clock", {}, raw='<tool_call>function\nclock\n{}</tool_call>')
            yield TurnEnd("stop", Usage(completion_tokens=1), token_ids=())
            return
        if prefix is None:  # an ASR pass of the compaction
            async for e in self.local.generate(messages, options, cancel):
                yield e
            return
        async for e in self.local.generate(messages, options, cancel, prefix=prefix):
            if isinstance(e, TurnEnd):
                self.runs.append({"prompt": list(self.local.last_prompt_ids), "end": e})
            yield e


def held(run: dict) -> list[int]:
    """What the cache holds after a generation: its prompt and every reply id that was fed back
    (a generation stopped by max_new_tokens never runs its last sampled id)."""
    fed = list(run["end"].token_ids)
    return run["prompt"] + fed[: len(fed) - (run["end"].reason == "length")]


def common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def conversation(local, reuse: bool) -> tuple[Recorder, Session, list[tuple[int, ...]]]:
    @tool
    def clock() -> str:
        """The time now."""
        return "It is 10:42."

    registry = ToolRegistry()
    registry.add(clock)
    cfg = AssistantConfig(prefix_cache=reuse, language="en")
    cfg.generation.max_new_tokens = MAX_NEW
    cfg.generation.temperature = 0.0  # greedy
    backend = Recorder(local)
    session = Session(backend, config=cfg, tools=registry)
    outputs: list[tuple[int, ...]] = []

    def turn(user):
        async def go():
            return [e async for e in session.respond(user, reply="speech")]
        before = len(backend.runs)
        events = asyncio.run(go())
        outputs.append(tuple(i for r in backend.runs[before:] for i in r["end"].token_ids))
        return events

    turn("Hello, who are you?")                                  # 1 typed
    turn(espeak("Tell me something about Paris."))               # 2 spoken
    turn("What time is it now?")                                 # 3 a tool call, then the model answers
    events = turn(espeak("And what about the weather there?"))   # 4 spoken ...
    codes = sum(len(e.codes) for e in events if isinstance(e, SpeechCodes))
    before = list(session.history)
    session.truncate_last_reply(max(0, codes - 1) / 25)            #   ... cut by a barge-in before its last code
    assert session.history != before
    turn("Say it again, shorter.")                               # 5 typed
    budget = len(backend.runs[-1]["prompt"]) + MAX_NEW           # 6 forces a compaction: the oldest audio
    session.config.context.max_context_tokens = budget           #   becomes a transcript
    turn("Thanks, and goodbye.")
    assert session.last_compaction.replaced + session.last_compaction.dropped > 0
    return backend, session, outputs


def test_reuse_gives_the_same_conversation_and_reports_exactly_what_it_reused(local):
    on, session_on, out_on = conversation(local, reuse=True)
    off, session_off, out_off = conversation(local, reuse=False)
    assert out_on == out_off and all(out_on)  # token for token, every turn
    assert [r["prompt"] for r in on.runs] == [r["prompt"] for r in off.runs]
    assert len(on.runs) == 6  # the tool turn: a scripted call, then a local round
    assert all(r["end"].usage.cached_tokens == 0 for r in off.runs)

    assert on.runs[0]["end"].usage.cached_tokens == 0
    grown = 0
    for previous, run in zip(on.runs, on.runs[1:]):
        usage = run["end"].usage
        assert usage.prompt_tokens == len(run["prompt"])
        # exactly up to the first id that differs from what the previous generation ran
        assert usage.cached_tokens == min(common(held(previous), run["prompt"]), len(run["prompt"]) - 1)
        if run["prompt"][: len(previous["prompt"])] == previous["prompt"]:  # history only grew
            assert usage.cached_tokens >= len(previous["prompt"])
            grown += 1
    assert grown >= 1
    # turn 5 follows the barge-in, turn 6 the compaction: both start over before the old end
    for previous, run in (on.runs[3:5], on.runs[4:6]):
        assert run["end"].usage.cached_tokens < len(held(previous))


def test_the_cache_never_splits_or_reuses_different_audio(local):
    tok = local.tokenizer
    cache = PrefixCache()
    mel_a, mel_b = torch.zeros(128, 10), torch.ones(128, 10)
    ids = [1, 2, tok.audio_start_id] + [tok.audio_patch_id] * 4 + [tok.audio_end_id, 5, 6]
    cache.ids, cache.audio, cache.cache = list(ids), [(2, mel_a)], object()
    assert cache.common_prefix(ids, [mel_a.clone()], [2]) == len(ids)
    assert cache.common_prefix(ids, [mel_b], [2]) == 2  # same ids, other audio: from its <audio_start>
    cut = ids[:5] + [9]  # a prompt that ends inside the piece (never from a real prompt, still safe)
    assert cache.common_prefix(cut, [mel_a], [2]) == 2


def test_reuse_off_by_config_and_a_failed_step_drops_the_cache(local):
    cfg = AssistantConfig(prefix_cache=False)
    cfg.generation.max_new_tokens = 4
    session = Session(local, config=cfg)
    asyncio.run(_drain(session, "one"))
    end = asyncio.run(_drain(session, "two"))
    assert end.usage.cached_tokens == 0 and not session.prefix.ids

    cfg = AssistantConfig()
    cfg.generation.max_new_tokens = 4
    session = Session(local, config=cfg)
    asyncio.run(_drain(session, "one"))
    assert session.prefix.ids
    kind = type(session.prefix.cache)
    original = kind.crop

    def broken(self, n):
        raise RuntimeError("device lost")

    kind.crop = broken
    session.style = "whisper"  # rewrites the system prompt: the kept cache must be cropped (whatever the reply was)
    try:
        end = asyncio.run(_drain(session, "two"))
    finally:
        kind.crop = original
    assert end.reason == "error" and session.prefix.cache is None and not session.prefix._busy
    end = asyncio.run(_drain(session, "three"))  # and the session goes on, from a fresh prefill
    assert end.reason in ("stop", "length") and end.usage.cached_tokens == 0


async def _drain(session: Session, text: str) -> TurnEnd:
    return [e async for e in session.respond(text)][-1]


def test_a_discarded_speculation_rolls_the_cache_back_and_leaves_no_trace(local):
    cfg = AssistantConfig(language="en", reply="speech")
    cfg.generation.max_new_tokens = 6
    cfg.generation.temperature = 0.0
    session = Session(local, config=cfg)
    first = asyncio.run(_drain(session, "Hello there."))
    before_ids, before_history = list(session.prefix.ids), list(session.history)
    speech = espeak("What is the weather in Paris")

    async def speculate_and_discard():
        spec = session.speculate(speech[: len(speech) // 2], reply="speech")
        while spec.tokens == 0 and not spec._task.done():  # let it prefill and generate
            await asyncio.sleep(0.01)
        await spec.discard()
        return spec

    spec = asyncio.run(speculate_and_discard())
    assert spec.state == "discarded" and spec.tokens > 0
    assert session.history == before_history
    assert session.prefix.ids == before_ids[: len(session.prefix.ids)]  # only what the speculation did not change
    rolled = len(session.prefix.ids)
    assert rolled >= first.usage.prompt_tokens - 8  # the conversation up to (at most) the reply opener stays
    end = asyncio.run(_drain(session, "And tomorrow?"))
    assert end.usage.cached_tokens == rolled  # the real turn starts exactly where the speculation's changes began


def test_the_server_keeps_the_cache_across_session_update(local):
    from stepvoice.assistant.server.sessions import AssistantSessions
    from stepvoice.assistant.server.settings import SessionSettings

    factory = AssistantSessions(lambda: local, model_name="stepvoice-test")
    first = factory.build(SessionSettings())
    asyncio.run(_drain(first, "Hello."))
    rebuilt = factory.build(SessionSettings(instructions="Be brief."), first)
    assert rebuilt.prefix is first.prefix and rebuilt.history == first.history
    end = asyncio.run(_drain(rebuilt, "Again."))
    assert 0 < end.usage.cached_tokens < first.last_options.max_new_tokens + len(first.prefix.ids)


def test_realtime_response_done_reports_cached_tokens(local):
    import json

    from websockets.asyncio.client import connect

    from server_support import LoopbackServer
    from stepvoice.assistant.server.sessions import AssistantSessions

    server = LoopbackServer(AssistantSessions(lambda: local, model_name="stepvoice-test"))

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            async def until(kind):
                while True:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    assert ev["type"] != "error", ev
                    if ev["type"] == kind:
                        return ev
            await until("session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"], "max_output_tokens": 4}}))
            await until("session.updated")
            usages = []
            for text in ("Hello there.", "And again?"):
                await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
                await ws.send(json.dumps({"type": "response.create"}))
                usages.append((await until("response.done"))["response"]["usage"])
            return usages

    try:
        first, second = asyncio.run(go())
    finally:
        server.close()
    assert first["input_token_details"]["cached_tokens"] == 0
    # all of the first prompt is reused (but its reply opener, if the reply left nothing in history)
    assert first["input_tokens"] - 8 <= second["input_token_details"]["cached_tokens"] < second["input_tokens"]
