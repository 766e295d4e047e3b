"""Context compaction of a long spoken conversation: compression achieved and what it costs per turn.

    .venv/bin/python bench/session_compaction.py [--turns 200] [--user-seconds 10] [--reply-seconds 8]

A conversation of spoken turns (user audio with a transcript, spoken replies
with 25 codes per second and their text) runs through `Session` on the
scripted engine, once with the default 16384-token context and once with an
unbounded one, side by side in this run. Token counts use the fake
checkpoint's tokenizer (real special ids, small BPE: it spends more tokens
on English text than Qwen2's, so the printed text-side costs are an upper
bound) and the estimate used without a tokenizer.

Prints: the audio:text ratio of the turns replaced by text (the seed cites
14:1), full history / prompt, and the time per turn with compaction over the
time per turn without.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import numpy as np

from stepvoice.assistant.config import AssistantConfig, ContextConfig
from stepvoice.assistant.session import Session
from stepvoice.engine.backends.scripted import ScriptedBackend, ScriptedReply
from stepvoice.engine.messages import Audio, Message
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

WORDS = ("the weather in paris is mild today with a light breeze from the west and some clouds later "
         "so take a jacket if you go out this evening").split()
WORDS_PER_SECOND = 2.5


def sentence(seconds: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=max(1, int(seconds * WORDS_PER_SECOND))))


class Script(ScriptedBackend):
    def __init__(self, replies, tokenizer):
        super().__init__(replies)
        self.tokenizer = tokenizer


async def converse(turns: int, user_s: float, reply_s: float, tokenizer, max_context: int) -> tuple[Session, float]:
    replies = [ScriptedReply(sentence(reply_s, 10_000 + i), tuple(int(c) for c in
                             np.random.default_rng(i).integers(0, 6561, int(reply_s * 25))))
               for i in range(turns)]
    cfg = AssistantConfig(context=ContextConfig(max_context_tokens=max_context))
    session = Session(Script(replies, tokenizer), config=cfg)
    rng = np.random.default_rng(0)
    spent = 0.0
    for i in range(turns):
        samples = (0.05 * rng.standard_normal(int(user_s * 16000))).astype(np.float32)
        user = Message("human", [Audio(samples, transcript=sentence(user_s, i))])
        t0 = time.perf_counter()
        async for _ in session.respond(user, reply="speech"):
            pass
        spent += time.perf_counter() - t0
    return session, spent / turns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--user-seconds", type=float, default=10.0)
    ap.add_argument("--reply-seconds", type=float, default=8.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        write_fake_tokenizer(d)
        tok = load_tokenizer(d)
        for label, t in (("fake-checkpoint tokenizer", tok), ("estimate (no tokenizer)", None)):
            bounded, per_turn = asyncio.run(converse(args.turns, args.user_seconds, args.reply_seconds, t, 16384))
            _, per_turn_free = asyncio.run(converse(args.turns, args.user_seconds, args.reply_seconds, t, 10**9))
            c = bounded.compaction
            print(f"[{label}] {args.turns} turns of {args.user_seconds:g} s questions and {args.reply_seconds:g} s "
                  f"spoken answers")
            print(f"  audio turns as text: {c.replaced} replaced, audio:text {c.audio_ratio:.1f}:1")
            print(f"  full history / prompt: {c.full_tokens} / {c.prompt_tokens} tokens = {c.ratio:.1f}:1; "
                  f"{c.dropped} message(s) dropped")
            print(f"  time per turn with compaction / without: {per_turn * 1e3:.2f} ms / {per_turn_free * 1e3:.2f} ms"
                  f" = {per_turn / max(per_turn_free, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
