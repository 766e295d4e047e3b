"""Sampling: greedy, temperature, top-k, top-p, repetition penalty, seeds."""
from __future__ import annotations

import pytest
import torch

from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.sampling import Sampler, candidates


def opts(**kw) -> GenerationOptions:
    base = dict(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=0)
    base.update(kw)
    return GenerationOptions(**base)


def test_greedy_is_argmax_and_ignores_seed():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    for seed in (1, 2, 3):
        assert Sampler(opts(temperature=0, seed=seed), 1000)(logits) == int(logits.argmax())


def test_same_seed_same_draws_different_seed_differs():
    logits = torch.zeros(5000)  # uniform: draws depend only on the generator

    def draw(seed: int) -> list[int]:
        s = Sampler(opts(seed=seed), 5000)
        return [s(logits) for _ in range(20)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_temperature_sharpens_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    counts = {}
    for t in (0.3, 3.0):
        s = Sampler(opts(temperature=t, seed=1), 4)
        draws = [s(logits) for _ in range(2000)]
        counts[t] = draws.count(0) / len(draws)
    expected_cold = float(torch.softmax(logits / 0.3, -1)[0])
    assert abs(counts[0.3] - expected_cold) < 0.03
    assert counts[3.0] < 0.5 < counts[0.3]


def test_top_k_limits_choices():
    logits = torch.randn(3000, generator=torch.Generator().manual_seed(5))
    allowed = set(torch.topk(logits, 3).indices.tolist())
    s = Sampler(opts(top_k=3, seed=2), 3000)
    draws = {s(logits) for _ in range(300)}
    assert draws <= allowed and len(draws) == 3
    assert {Sampler(opts(top_k=1, seed=k), 3000)(logits) for k in range(5)} == {int(logits.argmax())}


def nucleus_by_full_sort(scores: torch.Tensor, top_p: float) -> set[int]:
    probs = torch.softmax(scores, -1)
    order = torch.argsort(probs, descending=True)
    kept, mass = [], 0.0
    for i in order.tolist():
        kept.append(i)
        mass += float(probs[i])
        if mass >= top_p:
            break
    return set(kept)


@pytest.mark.parametrize("spread", [0.1, 3.0, 10.0])  # flat (needs a full sort) to peaked
@pytest.mark.parametrize("top_p", [0.5, 0.9])
def test_top_p_nucleus_equals_full_sort(spread, top_p):
    scores = torch.randn(158720, generator=torch.Generator().manual_seed(9)) * spread
    _, ids = candidates(scores, 0, top_p)
    assert set(ids.tolist()) == nucleus_by_full_sort(scores, top_p)


def test_top_p_draws_stay_in_nucleus():
    scores = torch.tensor([3.0, 2.5, 0.0, -1.0, -2.0])
    allowed = nucleus_by_full_sort(scores, 0.8)
    assert allowed == {0, 1}
    s = Sampler(opts(top_p=0.8, seed=3), 5)
    assert {s(scores) for _ in range(200)} == allowed


def test_repetition_penalty_formula():
    logits = torch.tensor([2.0, -2.0, 1.0, -1.0, 0.5])
    s = Sampler(opts(repetition_penalty=2.0), 5)
    s.observe([0, 1])
    got = s.penalized(logits)
    assert got.tolist() == [1.0, -4.0, 1.0, -1.0, 0.5]
    # Greedy with the penalty: token 0 leads until it has been produced once (2.0 / 3 < 1.0).
    g = Sampler(opts(temperature=0, repetition_penalty=3.0), 5)
    assert g(logits) == 0
    assert g(logits) == 2


def test_penalty_one_changes_nothing():
    logits = torch.randn(100)
    s = Sampler(opts(repetition_penalty=1.0), 100)
    s.observe(range(50))
    assert torch.equal(s.penalized(logits), logits)
