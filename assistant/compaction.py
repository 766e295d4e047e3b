"""Keep the prompt within the model's context.

Two steps, cheapest loss first:
1. old audio turns become text: user audio -> its transcript (stored, or an
   ASR pass through the backend), a spoken reply -> its text half (TA4 text);
2. only if that is not enough, the oldest exchanges are dropped (a whole
   exchange: a user turn and the replies and tool turns after it).
The newest `keep_last` messages (and always the current user turn onward)
stay verbatim. `CompactionStats` reports what was achieved; `ratio` is
tokens before / tokens after.

Token counts come from the real tokenizer when one is given (the local
engine), else from an estimate (text chars / 3, audio 12.5 tokens per second,
5 tokens per TA4 group of one text token and four speech codes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from stepvoice.engine.messages import Audio, Message, Speech, Text

TURN_OVERHEAD = 4  # <|BOT|> role \n ... <|EOT|>
AUDIO_TOKENS_PER_SECOND = 12.5
PIECE_SECONDS = 25
SAMPLE_RATE = 16000
TA4_GROUP = 4  # speech codes per text token

Transcriber = Callable[[Audio], Awaitable[str]]


@dataclass(frozen=True)
class CompactionStats:
    tokens_before: int
    tokens_after: int
    budget: int
    replaced: int = 0  # audio / speech parts turned into text
    dropped: int = 0  # messages removed
    replaced_tokens_before: int = 0  # what the replaced audio parts cost before ...
    replaced_tokens_after: int = 0  # ... and after (their text)
    dropped_tokens: int = 0

    @property
    def ratio(self) -> float:
        """Prompt tokens before / after compaction (1.0 when nothing was done)."""
        return self.tokens_before / max(1, self.tokens_after)

    @property
    def audio_ratio(self) -> float:
        """Compression of the audio turns that were replaced by text (the seed's 14:1 figure)."""
        return self.replaced_tokens_before / max(1, self.replaced_tokens_after) if self.replaced else 1.0

    @property
    def within_budget(self) -> bool:
        return self.tokens_after <= self.budget

    def summary(self) -> str:
        s = f"context {self.tokens_before} -> {self.tokens_after} tokens (ratio {self.ratio:.1f}:1"
        if self.replaced:
            s += f"; {self.replaced} audio turn(s) as text, {self.audio_ratio:.1f}:1"
        if self.dropped:
            s += f"; {self.dropped} oldest message(s) dropped"
        return s + ")"


@dataclass
class CompactionTotals:
    """All compaction of one conversation so far: how much smaller the prompt is than the full history."""

    passes: int = 0
    replaced: int = 0
    dropped: int = 0
    replaced_tokens_before: int = 0
    replaced_tokens_after: int = 0
    dropped_tokens: int = 0
    prompt_tokens: int = 0  # history tokens after the latest pass

    def add(self, stats: CompactionStats) -> None:
        self.prompt_tokens = stats.tokens_after
        if not (stats.replaced or stats.dropped):
            return
        self.passes += 1
        self.replaced += stats.replaced
        self.dropped += stats.dropped
        self.replaced_tokens_before += stats.replaced_tokens_before
        self.replaced_tokens_after += stats.replaced_tokens_after
        self.dropped_tokens += stats.dropped_tokens

    @property
    def full_tokens(self) -> int:
        """What the history would cost uncompacted."""
        return self.prompt_tokens + self.replaced_tokens_before - self.replaced_tokens_after + self.dropped_tokens

    @property
    def ratio(self) -> float:
        return self.full_tokens / max(1, self.prompt_tokens)

    @property
    def audio_ratio(self) -> float:
        """Audio tokens replaced / the text that replaced them (the seed's 14:1 figure)."""
        return self.replaced_tokens_before / max(1, self.replaced_tokens_after) if self.replaced else 1.0

    def summary(self) -> str:
        s = f"history {self.full_tokens} -> {self.prompt_tokens} tokens ({self.ratio:.1f}:1"
        if self.replaced:
            s += f"; {self.replaced} audio turn(s) as text, {self.audio_ratio:.1f}:1"
        if self.dropped:
            s += f"; {self.dropped} oldest message(s) dropped"
        return s + ")"


class TokenCounter:
    """Prompt tokens of one message; exact with a tokenizer, else estimated. Counts are cached per message."""

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[Message, int]] = {}

    def __call__(self, message: Message) -> int:
        hit = self._cache.get(id(message))
        if hit is not None and hit[0] is message:
            return hit[1]
        overhead = TURN_OVERHEAD if self.tokenizer is None else len(self.tokenizer.encode(message.role + "\n")) + 2
        n = overhead + sum(self.part(p) for p in message.content)
        self._cache[id(message)] = (message, n)
        return n

    def total(self, messages: Sequence[Message]) -> int:
        return sum(self(m) for m in messages)

    def forget_all_but(self, messages: Sequence[Message]) -> None:
        keep = {id(m) for m in messages}
        self._cache = {k: v for k, v in self._cache.items() if k in keep}

    def text(self, text: str) -> int:
        if not text:
            return 0
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text))
        return math.ceil(len(text) / 3)

    def part(self, part: Any) -> int:
        if isinstance(part, Text):
            return self.text(part.text)
        if isinstance(part, Audio):
            return audio_tokens(len(part.samples), exact=self.tokenizer is not None)
        if isinstance(part, Speech):
            if part.token_ids:
                return len(part.token_ids) + 1
            groups = max(math.ceil(len(part.codes) / TA4_GROUP), self.text(part.text))
            return 2 + groups * (1 + TA4_GROUP) + self.text(part.tail_text)
        return 0


def audio_tokens(n_samples: int, exact: bool = True) -> int:
    """`<audio_start>` + placeholders + `<audio_end>` for each 25 s piece."""
    piece = SAMPLE_RATE * PIECE_SECONDS
    total = 0
    for start in range(0, max(n_samples, 1), piece):
        n = min(piece, n_samples - start)
        total += 2 + (_placeholders(n) if exact else math.ceil(n / SAMPLE_RATE * AUDIO_TOKENS_PER_SECOND))
    return total


def _placeholders(n: int) -> int:
    try:
        from stepvoice.engine.audio import placeholder_count
    except ImportError:  # engine.audio not importable: the published rate is close enough
        return math.ceil(n / SAMPLE_RATE * AUDIO_TOKENS_PER_SECOND)
    frames = (n + 479) // 160  # mel frames of the official recipe (479 samples right pad, last frame dropped)
    return int(placeholder_count(frames))


def as_text(message: Message, transcripts: dict[int, str]) -> Message:
    """The message with every audio/speech part replaced by its text."""
    parts: list[Any] = []
    for p in message.content:
        if isinstance(p, Audio):
            t = p.transcript if p.transcript is not None else transcripts.get(id(p), "")
            parts.append(Text(t if t else "[audio]"))
        elif isinstance(p, Speech):
            parts.append(Text(p.text + p.tail_text))
        else:
            parts.append(p)
    merged: list[Any] = []
    for p in parts:  # merge neighbouring text parts
        if merged and isinstance(p, Text) and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + p.text)
        else:
            merged.append(p)
    return Message(message.role, merged)


def has_audio(message: Message) -> bool:
    return any(isinstance(p, (Audio, Speech)) for p in message.content)


def protected_start(messages: Sequence[Message], keep_last: int) -> int:
    """Index from which messages stay verbatim: the last `keep_last`, and the latest user turn onward."""
    start = max(0, len(messages) - keep_last)
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "human":
            start = min(start, i)
            break
    return start


async def compact(messages: list[Message], budget: int, counter: TokenCounter, *, keep_last: int = 4,
                  transcribe: Transcriber | None = None) -> tuple[list[Message], CompactionStats]:
    """Messages that fit `budget` tokens (if the protected tail allows), and what it took."""
    before = counter.total(messages)
    if before <= budget:
        counter.forget_all_but(messages)  # keeps the cache to the conversation (per-request turns come and go)
        return messages, CompactionStats(before, before, budget)
    out = list(messages)
    total = before
    replaced = dropped = rep_before = rep_after = dropped_tokens = 0
    guard = protected_start(out, keep_last)
    for i in range(guard):  # 1. old audio -> text, oldest first
        if total <= budget:
            break
        if not has_audio(out[i]):
            continue
        transcripts: dict[int, str] = {}
        if transcribe is not None:
            for p in out[i].content:
                if isinstance(p, Audio) and p.transcript is None:
                    transcripts[id(p)] = (await transcribe(p)).strip()
        old_parts = [p for p in out[i].content if isinstance(p, (Audio, Speech))]
        old = counter(out[i])
        out[i] = as_text(out[i], transcripts)
        new = counter(out[i])
        total += new - old
        replaced += 1
        audio_cost = sum(counter.part(p) for p in old_parts)
        rep_before += audio_cost
        rep_after += max(1, audio_cost - (old - new))  # what the same parts cost as text
    while total > budget and guard > 0:  # 2. drop the oldest exchange
        end = 1
        while end < guard and out[end].role != "human":
            end += 1
        gone = counter.total(out[:end])
        total -= gone
        dropped_tokens += gone
        dropped += end
        del out[:end]
        guard -= end
    counter.forget_all_but(out)
    return out, CompactionStats(before, total, budget, replaced, dropped, rep_before, rep_after, dropped_tokens)
