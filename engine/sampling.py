"""Next-token choice: repetition penalty, then greedy or temperature / top-k / top-p.

The order and formulas follow transformers' logits processors, which the
official examples use (repetition penalty over prompt and output ids:
negative logits multiplied, positive divided).
"""
from __future__ import annotations

from typing import Iterable

import torch

from stepvoice.engine.options import GenerationOptions


class Sampler:
    """Sampling state of one generation: the seeded generator and the ids seen so far."""

    def __init__(self, options: GenerationOptions, vocab_size: int, device: torch.device | str = "cpu"):
        # unset fields take transformers' defaults (a backend resolves against its checkpoint first)
        self.options = options if options.is_resolved else options.resolved()
        self.generator = torch.Generator(device=device)
        if options.seed is not None:
            self.generator.manual_seed(int(options.seed))
        else:
            self.generator.seed()
        self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)

    def observe(self, ids: Iterable[int] | torch.Tensor) -> None:
        """Mark ids as seen (for the repetition penalty)."""
        if self.options.repetition_penalty == 1.0:
            return
        idx = torch.as_tensor(ids if isinstance(ids, torch.Tensor) else list(ids), dtype=torch.long)
        if idx.numel():
            self.seen[idx.to(self.seen.device)] = True

    def __call__(self, logits: torch.Tensor) -> int:
        """One token id from a [vocab] logits vector; the id is marked as seen."""
        o = self.options
        scores = self.penalized(logits)
        if o.temperature == 0:
            token = int(torch.argmax(scores))
        else:
            values, ids = candidates(scores / o.temperature, o.top_k, o.top_p)
            token = int(ids[self._draw(torch.softmax(values, dim=-1))])
        if o.repetition_penalty != 1.0:
            self.seen[token] = True
        return token

    def _draw(self, probs: torch.Tensor) -> int:
        """Index drawn from `probs` by inverting its CDF (one uniform number; much
        cheaper than torch.multinomial over the whole vocabulary)."""
        cdf = torch.cumsum(probs, dim=-1)
        u = torch.rand((), generator=self.generator, device=probs.device) * cdf[-1]
        return min(int(torch.searchsorted(cdf, u, right=True)), probs.numel() - 1)

    def penalized(self, logits: torch.Tensor) -> torch.Tensor:
        """float32 logits with the repetition penalty applied to every seen id."""
        scores = logits.float().clone()
        p = self.options.repetition_penalty
        if p != 1.0:
            seen = scores[self.seen]
            scores[self.seen] = torch.where(seen < 0, seen * p, seen / p)
        return scores


def candidates(scores: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, ids) of the tokens sampling may choose: the top_k best, then the
    smallest most-likely set whose probability reaches top_p (the nucleus).

    The nucleus is looked for among the top 256, then 4096 tokens before a full
    sort, so a peaked distribution costs a small top-k instead of sorting the
    whole vocabulary; the result is the same set either way.
    """
    n = scores.numel()
    if top_k and top_k < n:
        values, ids = torch.topk(scores, top_k)
    elif top_p >= 1.0:
        return scores, torch.arange(n, device=scores.device)
    else:
        values, ids = None, None
    if top_p >= 1.0:
        return values, ids
    if values is None:
        probs = torch.softmax(scores, dim=-1)
        for k in (256, 4096, n):
            if k >= n:
                top_probs, ids = torch.sort(probs, descending=True)
                break
            top_probs, ids = torch.topk(probs, k)  # sorted, descending
            if float(top_probs.sum()) >= top_p:
                break
        values = scores[ids]
    else:
        top_probs = torch.softmax(values, dim=-1)
    before = torch.cumsum(top_probs, dim=-1) - top_probs  # mass ranked above each token
    keep = before < top_p
    keep[0] = True
    return values[keep], ids[keep]
