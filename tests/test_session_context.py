"""Context management: long conversations stay within the model's context, newest turns verbatim."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stepvoice.assistant.compaction import TokenCounter, compact
from stepvoice.assistant.config import AssistantConfig, ContextConfig
from stepvoice.assistant.presets import ASR_PROMPT
from stepvoice.assistant.session import Session
from stepvoice.engine.backends.scripted import ScriptedBackend
from stepvoice.engine.events import TextDelta, TurnEnd, Usage
from stepvoice.engine.messages import Audio, Message, Speech, Text
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.prompt import build_prompt
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

SR = 16000


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(d)
    return load_tokenizer(d)


class TokenizedScript(ScriptedBackend):
    """The scripted engine plus the fake checkpoint's tokenizer, as LocalBackend exposes it,
    so the session counts with real token ids."""

    def __init__(self, replies, tokenizer):
        super().__init__(replies)
        self.tokenizer = tokenizer


def clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def test_200_turns_stay_within_the_context_and_keep_the_last_turns_verbatim(tokenizer):
    n = 200
    replies = [{"text": f"Answer number {i}, about the topic you raised.", "speech_codes": list(range(i % 50, i % 50 + 100))}
               for i in range(n)]
    backend = TokenizedScript(ScriptedBackend.from_data({"replies": replies}).replies, tokenizer)
    cfg = AssistantConfig(generation=AssistantConfig().generation, context=ContextConfig(keep_last_turns=4))
    session = Session(backend, config=cfg)
    limit = cfg.context.max_context_tokens
    sent: list[Message] = []

    async def talk():
        for i in range(n):
            user = Message("human", [Audio(clip(3.0, i), transcript=f"question number {i} about something")])
            sent.append(user)
            async for _ in session.respond(user, reply="speech"):
                pass

    asyncio.run(talk())
    opts = GenerationOptions(reply="speech")
    for request, _ in backend.requests[-3:]:  # exact prompt lengths of the last requests
        ids = build_prompt(request, tokenizer, opts).ids
        assert len(ids) + cfg.generation.max_new_tokens <= limit
    assert session.last_compaction.within_budget
    totals = session.compaction
    assert totals.replaced > 100 and totals.passes > 0
    assert totals.audio_ratio > 3  # 3 s of audio (~40 tokens) and 100-code replies (~127) become short text
    assert totals.ratio > 2 and f"{totals.ratio:.1f}:1" in totals.summary()
    # Without compaction the conversation would not fit.
    full = TokenCounter(tokenizer).total(sent) + sum(len(r.speech_codes) for r in backend.replies)
    assert full > limit and totals.full_tokens > limit
    # The newest turns are verbatim: the last user audio is the very array sent, replies keep their codes.
    last_request = backend.requests[-1][0]
    assert last_request[-1] is sent[-1]
    assert isinstance(last_request[-2].content[0], Speech) and last_request[-2].content[0].codes
    assert isinstance(last_request[-3].content[0], Audio) and last_request[-3] is sent[-2]
    # Older turns are text now: user audio as its transcript, spoken replies as their text.
    # (oldest first, only as far as needed: the text turns come before any audio turn).
    humans = [isinstance(m.content[0], Text) for m in session.history if m.role == "human"]
    assert humans[0] and not humans[-1] and humans == sorted(humans, reverse=True)
    first_text = next(m for m in session.history if m.role == "human")
    assert first_text.plain_text == "question number 0 about something"
    replies = [m.content[0] for m in session.history if m.role == "assistant"]
    assert isinstance(replies[0], Text) and replies[0].text == "Answer number 0, about the topic you raised."
    # The earliest exchanges were kept as text (dropping is the last resort) or dropped whole.
    assert session.history[0].role == "human"


def test_user_audio_without_transcript_gets_an_asr_pass():
    class AsrAware(ScriptedBackend):
        async def generate(self, messages, options, cancel=None):
            if messages and messages[0].plain_text == ASR_PROMPT:
                self.asr_calls = getattr(self, "asr_calls", 0) + 1
                assert options.temperature == 0.0 and isinstance(messages[1].content[0], Audio)
                yield TextDelta(f"heard {len(messages[1].content[0].samples)} samples")
                yield TurnEnd("stop", Usage())
                return
            async for e in super().generate(messages, options, cancel):
                yield e

    backend = AsrAware(ScriptedBackend.from_data({"replies": [f"reply {i}" for i in range(6)]}).replies)
    cfg = AssistantConfig(context=ContextConfig(max_context_tokens=1200, keep_last_turns=2))
    cfg.generation.max_new_tokens = 256
    session = Session(backend, config=cfg)

    async def talk():
        for i in range(6):
            async for _ in session.respond(clip(20.0, i)):  # ~250 tokens of audio each, no transcript
                pass

    asyncio.run(talk())
    assert getattr(backend, "asr_calls", 0) >= 1
    texts = [m.plain_text for m in session.history if m.role == "human" and isinstance(m.content[0], Text)]
    assert texts and all(t == f"heard {20 * SR} samples" for t in texts)


def test_compaction_drops_whole_oldest_exchanges_only_as_a_last_resort():
    counter = TokenCounter()
    msgs = []
    for i in range(10):
        msgs += [Message.text("human", f"question {i} " * 20), Message.text("assistant", f"answer {i} " * 20),
                 Message.text("input", "result " * 10)]
    total = counter.total(msgs)
    out, stats = asyncio.run(compact(msgs, total // 2, counter, keep_last=3))
    assert stats.dropped > 0 and stats.replaced == 0 and stats.tokens_after <= total // 2
    assert out[0].role == "human"  # no orphan reply or tool turn at the start
    assert out[-3:] == msgs[-3:]
    assert stats.ratio == pytest.approx(stats.tokens_before / stats.tokens_after)
    same, s2 = asyncio.run(compact(msgs, total, counter, keep_last=3))
    assert same is msgs and s2.ratio == 1.0 and not s2.replaced and not s2.dropped


def test_the_token_cache_holds_only_the_conversation():
    backend = ScriptedBackend.from_data({"replies": [f"reply {i}" for i in range(30)]})
    session = Session(backend)

    async def talk():
        for i in range(30):
            async for _ in session.respond(f"question {i}"):
                pass

    asyncio.run(talk())
    assert len(session.counter._cache) <= len(session.history)
