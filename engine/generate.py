"""Token generation: prefill the prompt once, then decode one token at a time
against a KV cache that belongs to this generation (never to the module).

`Generation` holds all state of one stream (cache, position, sampler, ids);
`prefill` and `decode_one` are the two model calls; with `step` (from
`engine.compile.make_decode_step`) single tokens go through that fixed-shape,
optionally compiled step instead. With `use_cache=False`
every step recomputes the whole sequence, as the official code does; tests
and the benchmark use it as the reference.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import torch

from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.sampling import Sampler


@torch.inference_mode()
def prefill(model, cache: Any, ids: Sequence[int], mels: Sequence[torch.Tensor] = (),
            audio_starts: Sequence[int] = (), position: int = 0) -> torch.Tensor:
    """Run `ids` (with audio spliced in) at `position`..; returns the last position's logits [vocab]."""
    x = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
    pos = torch.arange(position, position + x.shape[1], device=model.device)[None]
    logits = model(x, list(mels) or None, list(audio_starts) or None, past_key_values=cache,
                   position_ids=pos, logits_to_keep=1)
    return logits[0, -1]


@torch.inference_mode()
def decode_one(model, cache: Any, token_id: int, position: int) -> torch.Tensor:
    """One new token at `position` against the cache; returns its logits [vocab]."""
    x = torch.tensor([[token_id]], dtype=torch.long, device=model.device)
    pos = torch.tensor([[position]], dtype=torch.long, device=model.device)
    return model(x, past_key_values=cache, position_ids=pos, logits_to_keep=1)[0, -1]


@torch.inference_mode()
def full_forward(model, ids: Sequence[int], mels: Sequence[torch.Tensor] = (),
                 audio_starts: Sequence[int] = ()) -> torch.Tensor:
    """Official-style step: the whole sequence again, no cache; last logits [vocab]."""
    x = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
    return model(x, list(mels) or None, list(audio_starts) or None, logits_to_keep=1)[0, -1]


class Generation:
    """One generation: `next_token()` until it returns None; then `reason` says why
    ("stop": a stop id was produced, "length": max_new_tokens reached,
    "cancelled": `cancel()` was called).

    The stop id itself is returned by `next_token()` (and kept in `generated`)
    so the caller sees it; it reaches the model only if `append()` continues.
    """

    def __init__(
        self,
        model,
        ids: Sequence[int],
        mels: Sequence[torch.Tensor] = (),
        audio_starts: Sequence[int] = (),
        options: GenerationOptions | None = None,
        stop_ids: Iterable[int] = (),
        *,
        use_cache: bool = True,
        keep_logits: bool = False,
        step: Any = None,
    ):
        self.model = model
        self.options = options or GenerationOptions()
        self.stop_ids = frozenset(int(i) for i in stop_ids)
        self.use_cache = use_cache
        self.ids: list[int] = [int(i) for i in ids]  # everything the model has seen or will see
        self.prompt_len = len(self.ids)
        self.mels = list(mels)
        self.audio_starts = list(audio_starts)
        self.generated: list[int] = []
        self.reason: str | None = None
        self.logits_history: list[torch.Tensor] | None = [] if keep_logits else None
        # `step` (engine.compile.DecodeStep) decodes single tokens over its own fixed-shape cache.
        self.step = step if use_cache else None
        capacity = len(self.ids) + self.options.max_new_tokens
        if self.step is not None:
            self.cache = self.step.new_cache(capacity)
        else:
            self.cache = model.new_cache(capacity) if use_cache else None
        self.position = 0  # tokens in the cache
        self.sampler = Sampler(self.options, model.config.text_config.vocab_size, model.device)
        self.sampler.observe(self.ids)
        self._logits: torch.Tensor | None = None
        self._pending: list[int] = list(self.ids)  # ids not yet run through the model

    @property
    def finished(self) -> bool:
        return self.reason is not None

    def cancel(self) -> None:
        if self.reason is None:
            self.reason = "cancelled"

    def append(self, ids: Sequence[int]) -> None:
        """Continue from extra ids (e.g. `</think>\\n\\n<tts_start>` after a thought):
        they join the context and generation resumes after them."""
        ids = [int(i) for i in ids]
        self.ids += ids
        self._pending += ids
        self.sampler.observe(ids)
        if self.reason == "stop":
            self.reason = None

    def next_token(self) -> int | None:
        """Sample the next id (running the model on whatever is pending first)."""
        if self.reason is not None:
            return None
        if len(self.generated) >= self.options.max_new_tokens:
            self.reason = "length"
            return None
        self._advance()
        if self.logits_history is not None:
            self.logits_history.append(self._logits.float().cpu())
        token = self.sampler(self._logits)
        self.generated.append(token)
        self.ids.append(token)
        self._pending = [token]  # run only if generation continues (or after append())
        if token in self.stop_ids:
            self.reason = "stop"
        return token

    def __iter__(self) -> Iterator[int]:
        while (token := self.next_token()) is not None:
            yield token

    # ---- prefix reuse (#12, engine.prefix_cache): a kept cache instead of a fresh prefill ----

    def resume(self, cache: Any, cached: int) -> None:
        """Use `cache`, which already holds the keys/values of `ids[:cached]`, and run
        `ids[cached:]` now in one prefill (only the audio pieces among them go through the
        encoder); the first `next_token()` then samples from its logits.
        Call before the first `next_token()`, from the thread that runs the model."""
        if self.position or self.generated or not self.use_cache or not 0 < cached < len(self.ids):
            raise ValueError("resume: only before the first step, with 0 < cached < len(ids)")
        ensure = getattr(cache, "ensure_capacity", None)
        if ensure is not None:
            ensure(len(self.ids) + self.options.max_new_tokens)
        self.cache = cache
        pieces = [(m, s - cached) for m, s in zip(self.mels, self.audio_starts) if s >= cached]
        self._logits = prefill(self.model, cache, self.ids[cached:], [m for m, _ in pieces],
                               [s for _, s in pieces], position=cached)
        self.position = len(self.ids)
        self._pending = []  # nothing left to run: _advance keeps these logits

    def _advance(self) -> None:
        pending, self._pending = self._pending, []
        if not pending and self._logits is not None:  # resume() already ran the prompt
            return
        if not self.use_cache:
            self._logits = full_forward(self.model, self.ids, self.mels, self.audio_starts)
        elif self.position == 0:
            self._logits = prefill(self.model, self.cache, pending, self.mels, self.audio_starts)
        elif len(pending) == 1 and self.step is not None:
            self._logits = self.step(self.cache, pending[0], self.position)
        elif len(pending) == 1:
            self._logits = decode_one(self.model, self.cache, pending[0], self.position)
        else:
            self._logits = prefill(self.model, self.cache, pending, position=self.position)
        self.position += len(pending)
