"""The compiled decode step: same greedy tokens as the eager engine, compiled once for a whole reply."""
from __future__ import annotations

import pytest
import torch

from stepvoice.engine.checkpoint import load_model
from stepvoice.engine.compile import capacity_bucket, make_decode_step, should_compile
from stepvoice.engine.generate import Generation
from stepvoice.engine.options import GenerationOptions

A_START, A_END, PATCH = 151688, 151689, 151690


def audio_prompt() -> tuple[list[int], list[torch.Tensor], list[int]]:
    """A human turn with one audio piece (13 patches) between text ids, then the assistant opener."""
    mels = [torch.randn(128, 102, generator=torch.Generator().manual_seed(3))]
    ids = [151644, 8948, 198, 2610, 525, 151645, 151644, 14990, 198]
    starts = [len(ids)]
    ids += [A_START] + [PATCH] * 13 + [A_END] + [151645, 151644, 77091, 198]
    return ids, mels, starts


@pytest.fixture(scope="module")
def model(fake_small_checkpoint):
    return load_model(fake_small_checkpoint, "cpu", "float32")


@pytest.fixture(scope="module")
def compiled(model):
    torch._dynamo.reset()
    step = make_decode_step(model, compile=True)
    step.warm_up()  # the same cache size (one bucket) as the generations below
    return step


def greedy(n: int) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=n, temperature=0, repetition_penalty=1.0)


def test_compiled_greedy_tokens_equal_eager_and_never_recompile(model, compiled):
    from torch._dynamo.utils import counters

    ids, mels, starts = audio_prompt()
    eager = Generation(model, ids, mels, starts, greedy(128), keep_logits=True)
    expected = list(eager)
    graphs_after_warm_up = counters["stats"]["unique_graphs"]
    fast = Generation(model, ids, mels, starts, greedy(512), step=compiled, keep_logits=True)
    got = list(fast)
    assert len(got) == 512 and fast.reason == "length"
    assert got[:128] == expected
    a, b = torch.stack(fast.logits_history[:128]), torch.stack(eager.logits_history)
    assert float((a - b).abs().max() / b.abs().max()) <= 1e-4
    # 512 tokens, each at a new position: no new graph and no recompilation after the warm-up.
    assert counters["stats"]["unique_graphs"] == graphs_after_warm_up <= 2
    assert sum(counters["recompiles"].values()) == 0
    assert compiled.warmup_s and compiled.warmup_s > 0


def test_eager_step_equals_the_compiled_one_and_the_cache_crops(model, compiled):
    ids, mels, starts = audio_prompt()
    plain = make_decode_step(model, compile=False)
    a = list(Generation(model, ids, mels, starts, greedy(12), step=plain))
    gen = Generation(model, ids, mels, starts, greedy(12), step=compiled)
    assert list(gen) == a
    # A kept cache cropped to a prefix and decoded again gives the same logits (storage and shapes stay).
    cache = gen.cache
    capacity = cache.capacity
    position = len(ids) + 4
    first = compiled(cache, a[5], position).clone()
    cache.crop(position)
    assert cache.get_seq_length() == position
    again = compiled(cache, a[5], position)
    assert torch.equal(first, again) and cache.capacity == capacity and cache.get_seq_length() == position + 1


def test_settings():
    assert should_compile("auto", torch.device("cpu")) is False
    assert should_compile("auto", torch.device("cuda")) is True
    assert should_compile("auto", torch.device("cpu"), "int8") is True  # int8 is slow uncompiled
    assert should_compile("auto", torch.device("cpu"), "int4") is False
    assert should_compile("on", torch.device("cpu")) is True and should_compile("off", torch.device("cuda")) is False
    assert capacity_bucket(10) == 1024 and capacity_bucket(1025) == 2048
    with pytest.raises(Exception, match="compile must be auto, on or off"):
        should_compile("fast", torch.device("cpu"))
