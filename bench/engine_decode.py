"""Decode speed: cached decoding vs the official full recomputation, side by side.

    .venv/bin/python bench/engine_decode.py [--contexts 256 1024 2048] [--tokens 32]

Random weights on the chosen device, in two ~100 M presets (see
`preset_config`): `small` (the fake checkpoint's, real vocab) and `lm100m`. For each context length it measures tokens/s of
(a) `Generation` with its KV cache and (b) official-style recomputation of the
whole sequence per token (no cache), and prints the ratio. It also splits
the cached per-token time into the model forward and the rest (sampling with
the official chat settings, bookkeeping), and the extra cost of going through
`LocalBackend.generate` (worker thread + event decoding).

On a CUDA machine, `--presets real --dtype bfloat16` uses the real-size architecture with random bf16
weights and compares decode speed with the memory-bandwidth limit
(weight bytes / measured device copy bandwidth).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from stepvoice.engine.checkpoint import parse_device
from stepvoice.engine.checkpoint_fake import fake_config
from stepvoice.engine.config import StepAudio2Config
from stepvoice.engine.generate import Generation, decode_one, prefill
from stepvoice.engine.model import StepAudio2
from stepvoice.engine.options import GenerationOptions


def preset_config(name: str) -> StepAudio2Config:
    """small: the fake `small` checkpoint (real 158720 vocab, so the lm_head is most of
    the weights); lm100m: a ~100 M model whose weights sit mostly in the transformer
    layers (32000 vocab), closer to how the real 8.3 B model divides its weights."""
    if name == "small":
        return fake_config("small")
    if name == "lm100m":
        cfg = fake_config("small")
        t = cfg.text_config
        t.vocab_size, t.hidden_size, t.intermediate_size = 32000, 640, 1728
        t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads = 12, 10, 2
        t.bos_token_id = t.eos_token_id = None
        cfg.audio_encoder_config.llm_dim = 640
        return cfg
    if name == "real":
        return StepAudio2Config.from_file(Path(__file__).resolve().parents[1] / "tests/fixtures/step_audio_2_mini_config.json")
    raise SystemExit(f"unknown preset {name!r}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(config: StepAudio2Config, device: torch.device, dtype: torch.dtype) -> StepAudio2:
    torch.manual_seed(0)
    with torch.device(device):
        model = StepAudio2(config)
    return model.to(dtype).eval()


def prompt_ids(n: int, vocab: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, min(vocab, 151000), (n,), generator=g).tolist()


def timed(fn, device: torch.device) -> float:
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def cached_vs_full(model, ids: list[int], args: argparse.Namespace, options: GenerationOptions):
    """Median seconds per token of cached decoding and of full recomputation, measured
    interleaved (so a load spike on a shared machine hits both), and the prefill time."""
    dev = model.device
    cached = Generation(model, ids, options=options)
    full = Generation(model, ids, options=options, use_cache=False)
    first = timed(cached.next_token, dev)
    full.next_token()
    c_times, f_times = [], []
    per_round = max(1, args.tokens // args.full_tokens)
    for _ in range(args.full_tokens):
        c_times += [timed(cached.next_token, dev) for _ in range(per_round)]
        f_times.append(timed(full.next_token, dev))
    return statistics.median(c_times), statistics.median(f_times), first


def per_token_ms(model, ids: list[int], n: int, options: dict[str, GenerationOptions]) -> dict[str, float]:
    """Median ms per token of the bare cached forward and of `Generation` steps with
    each sampling setting, interleaved round by round."""
    dev = model.device
    cache = model.new_cache(len(ids) + n + 1)
    prefill(model, cache, ids)
    gens = {k: Generation(model, ids, options=o) for k, o in options.items()}
    for g in gens.values():
        g.next_token()
    times: dict[str, list[float]] = {"forward": [], **{k: [] for k in gens}}
    for i in range(n):
        times["forward"].append(timed(lambda: decode_one(model, cache, 1000 + i, len(ids) + i), dev))
        for k, g in gens.items():
            times[k].append(timed(g.next_token, dev))
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def backend_overhead_ms(model, n: int, options: GenerationOptions) -> float:
    """Extra time per token of LocalBackend.generate (worker-thread hop + event
    decoding) over driving `Generation` directly, same prompt and sampling."""
    from stepvoice.engine.backends.local import LocalBackend
    from stepvoice.engine.messages import Message
    from stepvoice.engine.prompt import build_prompt
    from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

    with tempfile.TemporaryDirectory() as d:
        write_fake_tokenizer(d)
        backend = LocalBackend(model, load_tokenizer(d))
    opts = GenerationOptions(**{**options.__dict__, "max_new_tokens": n, "seed": 0})
    messages = [Message.text("human", "hello " * 100)]

    async def through_backend() -> None:
        async for _ in backend.generate(messages, opts):
            pass

    t = time.perf_counter()
    asyncio.run(through_backend())
    sync(model.device)
    via_backend = time.perf_counter() - t
    p = build_prompt(messages, backend.tokenizer, opts)
    t = time.perf_counter()
    for _ in Generation(model, p.ids, options=opts, stop_ids=[backend.tokenizer.eot_id]):
        pass
    sync(model.device)
    direct = time.perf_counter() - t
    return (via_backend - direct) / n * 1e3


def bandwidth_gbs(device: torch.device) -> float:
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 10 / (time.perf_counter() - t) / 1e9  # read + write


def sampler_ms(vocab: int, options: GenerationOptions, peaked: bool, n: int = 20) -> float:
    """Median time of one sampling decision over `vocab` logits. Random weights give
    nearly flat logits (a huge nucleus); a trained model's are peaked."""
    from stepvoice.engine.sampling import Sampler

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(vocab, generator=g) * (1.0 if not peaked else 4.0)
    if peaked:
        logits[:8] += 20.0  # a few likely tokens hold most of the mass
    s = Sampler(options, vocab)
    s.observe(range(0, vocab, 100))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        s(logits)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def bench_preset(name: str, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    config = preset_config(name)
    model = build(config, device, dtype)
    vocab = config.text_config.vocab_size
    n_params = sum(p.numel() for p in model.parameters())
    llm_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("encoder.", "adapter.")))
    head = config.text_config.hidden_size * vocab
    print(f"\n== {name}: {n_params / 1e6:.1f} M parameters ({llm_params / 1e6:.1f} M in the LLM, "
          f"{head / 1e6:.1f} M of them in lm_head), vocab {vocab}")
    greedy = GenerationOptions(temperature=0, repetition_penalty=1.0)
    # official chat sampling (examples.py line 109); top_k 50 comes from transformers defaults
    chat = GenerationOptions(temperature=0.7, top_p=0.9, repetition_penalty=1.05)

    print(f"{'context':>8} {'cached tok/s':>13} {'full tok/s':>11} {'ratio':>7} {'prefill s':>10}")
    for ctx in args.contexts:
        cached, full, first = cached_vs_full(model, prompt_ids(ctx, vocab), args, greedy)
        print(f"{ctx:>8} {1 / cached:>13.1f} {1 / full:>11.2f} {full / cached:>6.1f}x {first:>10.3f}")

    ctx = args.contexts[min(1, len(args.contexts) - 1)]
    ms = per_token_ms(model, prompt_ids(ctx, vocab), args.tokens, {"greedy": greedy, "chat": chat})
    fwd = ms["forward"]
    print(f"per token at context {ctx} (medians, interleaved):")
    print(f"  model forward (cached)                  {fwd:8.2f} ms")
    print(f"  Generation step, greedy                 {ms['greedy']:8.2f} ms  ({ms['greedy'] - fwd:+.2f} ms beyond the forward)")
    print(f"  Generation step, T0.7 top-p0.9 rep1.05  {ms['chat']:8.2f} ms  ({ms['chat'] - fwd:+.2f} ms; random weights give flat logits)")
    print(f"  sampling T0.7 top-p0.9 rep1.05, peaked  {sampler_ms(vocab, chat, True):8.2f} ms  (trained-model-like logits)")
    print(f"  sampling T0.7 top-p0.9 rep1.05, flat    {sampler_ms(vocab, chat, False):8.2f} ms  (random-weight logits)")
    if name == "small":  # the fake tokenizer's special ids need the real vocab
        extra = backend_overhead_ms(model, args.tokens, chat)
        print(f"  LocalBackend.generate over Generation   {extra:+8.2f} ms  (thread hop + event decoding)")
    if device.type == "cuda":
        bw = bandwidth_gbs(device)
        weight_bytes = llm_params * torch.tensor([], dtype=dtype).element_size()
        limit = bw * 1e9 / weight_bytes
        print(f"  memory bandwidth {bw:.0f} GB/s; LLM weights {weight_bytes / 1e9:.2f} GB -> limit "
              f"{limit:.1f} tok/s; measured {1000 / fwd:.1f} tok/s ({1000 / fwd / limit:.0%} of the limit)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["small", "lm100m"], help="small, lm100m, real (GPU)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024, 2048])
    ap.add_argument("--tokens", type=int, default=32, help="cached tokens timed per context")
    ap.add_argument("--full-tokens", type=int, default=3, help="full-recomputation tokens timed per context")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    device = parse_device(args.device)
    dtype = getattr(torch, args.dtype)
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {args.dtype}")
    for name in args.presets:
        bench_preset(name, args, device, dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
