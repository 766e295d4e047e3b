"""Cached decoding equals official-style full recomputation, with audio in the prompt."""
from __future__ import annotations

import pytest
import torch

from stepvoice.engine.checkpoint import load_model
from stepvoice.engine.generate import Generation
from stepvoice.engine.options import GenerationOptions

A_START, A_END, PATCH = 151688, 151689, 151690


@pytest.fixture(scope="module")
def model(fake_checkpoint):
    return load_model(fake_checkpoint, "cpu", "float32")


def audio_prompt() -> tuple[list[int], list[torch.Tensor], list[int]]:
    """system text, a human turn with two audio pieces (13 and 7 patches), assistant opener."""
    g = torch.Generator().manual_seed(11)
    mels = [torch.randn(128, 102, generator=g), torch.randn(128, 60, generator=g)]
    ids = [151644, 8948, 198, 2610, 525, 151645, 151644, 14990, 198]
    starts = []
    for n in (13, 7):
        starts.append(len(ids))
        ids += [A_START] + [PATCH] * n + [A_END]
    ids += [151645, 151644, 77091, 198]
    return ids, mels, starts


def test_cached_greedy_equals_full_recomputation(model):
    ids, mels, starts = audio_prompt()
    opts = GenerationOptions(max_new_tokens=64, temperature=0, repetition_penalty=1.0)
    cached = Generation(model, ids, mels, starts, opts, keep_logits=True)
    full = Generation(model, ids, mels, starts, opts, use_cache=False, keep_logits=True)
    a, b = list(cached), list(full)
    assert len(a) == 64 and cached.reason == full.reason == "length"
    assert a == b
    la, lb = torch.stack(cached.logits_history), torch.stack(full.logits_history)
    assert float((la - lb).abs().max() / lb.abs().max()) <= 1e-5
    # The audio matters: without it the first logits differ.
    no_audio = Generation(model, ids, options=opts, keep_logits=True)
    no_audio.next_token()
    assert not torch.allclose(no_audio.logits_history[0], la[0], atol=1e-4)
    assert cached.position == len(ids) + 63  # the last sampled id is not run


def test_cached_sampling_with_penalty_equals_full(model):
    ids, mels, starts = audio_prompt()
    opts = GenerationOptions(max_new_tokens=24, temperature=0.9, top_p=0.8, top_k=50, repetition_penalty=1.3, seed=7)
    assert list(Generation(model, ids, mels, starts, opts)) == list(
        Generation(model, ids, mels, starts, opts, use_cache=False)
    )


def test_stop_id_ends_generation(model):
    ids, mels, starts = audio_prompt()
    opts = GenerationOptions(max_new_tokens=64, temperature=0, repetition_penalty=1.0)
    free = list(Generation(model, ids, mels, starts, opts))
    stop = free[5]
    first = free.index(stop)
    gen = Generation(model, ids, mels, starts, opts, stop_ids=[stop])
    out = list(gen)
    assert out == free[: first + 1] and gen.reason == "stop"
    assert gen.next_token() is None


def test_cancel_between_tokens(model):
    ids, _, _ = audio_prompt()
    gen = Generation(model, ids, options=GenerationOptions(max_new_tokens=50, temperature=0))
    got = []
    for t in gen:
        got.append(t)
        if len(got) == 3:
            gen.cancel()
    assert len(got) == 3 and gen.reason == "cancelled"


def test_append_continues_like_one_long_prompt(model):
    """Think flow: stop at a marker, append ids, continue; equal to prefilling it all."""
    ids, mels, starts = audio_prompt()
    opts = GenerationOptions(max_new_tokens=30, temperature=0, repetition_penalty=1.0)
    first = list(Generation(model, ids, mels, starts, opts))
    marker = first[3]
    gen = Generation(model, ids, mels, starts, opts, stop_ids=[marker], keep_logits=True)
    thought = list(gen)
    assert gen.reason == "stop" and thought[-1] == marker
    extra = [198, 198, 151693]
    gen.append(extra)
    gen.stop_ids = frozenset()
    cont = [gen.next_token() for _ in range(5)]
    ref = Generation(model, ids + thought + extra, mels, starts, opts, keep_logits=True)
    want = [ref.next_token() for _ in range(5)]
    assert cont == want
    assert torch.allclose(gen.logits_history[len(thought)], ref.logits_history[0], atol=1e-5, rtol=1e-5)


def test_preallocated_cache_grows_and_matches_dynamic_cache(model):
    """A reservation too small for the generation grows without changing a logit,
    and equals transformers' DynamicCache."""
    from stepvoice.engine.generate import decode_one, prefill
    from stepvoice.engine.kv_cache import KVCache

    ids, mels, starts = audio_prompt()
    small, dynamic = model.new_cache(4), model.new_cache()
    assert isinstance(small, KVCache)
    a = prefill(model, small, ids, mels, starts)
    b = prefill(model, dynamic, ids, mels, starts)
    for step in range(40):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
        token = int(a.argmax())
        a = decode_one(model, small, token, len(ids) + step)
        b = decode_one(model, dynamic, token, len(ids) + step)
    assert small.get_seq_length() == dynamic.get_seq_length() == len(ids) + 40
    assert small.layers[0]._keys.shape[-2] >= len(ids) + 40
