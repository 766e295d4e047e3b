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

Weight schemes side by side (issue #11), at the real width with a few layers:

    .venv/bin/python bench/engine_decode.py --schemes eager-bf16 compiled-bf16 int8 int4 \
        [--layers 2] [--context 256] [--tokens 8] [--rounds 5] [--threads 2]

prints ms/token, tok/s, the ratio to the first variant, weight bytes, the
per-layer time (step minus the head-only step: embedding, final norm and
lm_head, timed the same way) and the extrapolation to the real 28 layers.

Measured 2026-12-02 on the quiet 2-core machine, `--layers 2 --tokens 8 --rounds 5 --threads 2`,
context 256, int4 = MLP and lm_head 4-bit, attention int8 (engine.quant_format):

    variant        weights GB  ms/token   tok/s   vs eager-bf16  ms/layer  head ms  28-layer tok/s
    eager-bf16           3.21     106.5     9.4           1.00x      32.8     40.8            1.04
    compiled-bf16        3.21      93.3    10.7           1.14x      26.4     40.6            1.28
    int8                 2.17      44.3    22.6           2.41x      12.3     19.6            2.74
    int4                 1.72      24.8    40.2           4.29x       7.9      9.0            4.34

Measured 2026-12-01 on the shared 2-core machine, heavily loaded (load 7-9), int4 all 4-bit,
`--layers 2 --tokens 8 --rounds 5 --threads 1`, context 256:

    variant        weights GB  ms/token   tok/s   vs eager-bf16  ms/layer  head ms  28-layer tok/s
    eager-bf16           3.21     515.3     1.9           1.00x     145.8    223.7            0.23
    compiled-bf16        3.21     500.9     2.0           1.03x     148.4    204.1            0.23
    int8                 2.17     275.5     3.6           1.87x      73.5    128.6            0.46
    int4                 1.69     161.0     6.2           3.20x      53.2     54.6            0.65

int8 (compiled) is 2.0x eager bf16 per layer and in the 28-layer extrapolation
(1.87x at 2 layers, where the bf16 embedding table weighs more); int4 (torch's
CPU tinygemm kernel) 3.2x. Compiling bf16 gains little on the CPU: the matmuls
are the same oneDNN calls. One real-width MLP alone (1 thread, same load):
bf16 51 ms eager / 52 compiled, int8 596 ms eager (!) / 39 compiled,
int8 per-group-128 474 ms compiled (why int8 stays per-row), int4 15 / 13.
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


# ---- weight schemes side by side (`--schemes`) ---------------------------------------------------

SCHEME_VARIANTS = {  # name -> (quantize, compiled decode step)
    "eager-bf16": ("none", False), "compiled-bf16": ("none", True),
    "eager-int8": ("int8", False), "int8": ("int8", True), "int4": ("int4", True),
}


def real_width_config(layers: int) -> StepAudio2Config:
    """The real architecture (width 3584 / 18944, vocab 158720) with `layers` decoder layers."""
    cfg = preset_config("real")
    cfg.text_config.num_hidden_layers = layers
    cfg.audio_encoder_config.n_audio_layer = 1  # the encoder plays no part in decoding
    return cfg


def weight_bytes(model) -> int:
    """Bytes of the LLM's weights as they sit in memory (quantized components counted as stored)."""
    from stepvoice.engine.quantize import flatten_state

    llm = torch.nn.ModuleDict({"model": model.model, "lm_head": model.lm_head})
    tensors, _ = flatten_state(llm)
    return sum(t.numel() * t.element_size() for t in tensors.values())


class SchemeRun:
    """One variant: its model, its decode step (full and head-only) and a cache at the context length."""

    def __init__(self, name: str, base, context: int, device: torch.device):
        import copy

        from stepvoice.engine.compile import make_decode_step
        from stepvoice.engine.quantize import quantize_model

        scheme, compiled = SCHEME_VARIANTS[name]
        self.name, self.context = name, context
        self.model = copy.deepcopy(base) if scheme != "none" else base
        quantize_model(self.model, scheme)
        self.bytes = weight_bytes(self.model)
        if compiled:
            self.step = make_decode_step(self.model, compile=True)
            self.cache = self.step.new_cache(context + 64)
        else:  # the engine's eager path: transformers' Qwen2 with the preallocated cache
            self.step, self.cache = None, self.model.new_cache(context + 64)
        ids = prompt_ids(context, self.model.config.text_config.vocab_size)
        t = time.perf_counter()
        prefill(self.model, self.cache, ids)
        self.token = ids[-1]
        self.round(1)  # compiles a compiled step
        self.warmup_s = time.perf_counter() - t

    @torch.inference_mode()
    def round(self, n: int) -> float:
        """Seconds per token over `n` decode steps at positions context..context+n-1 (then rewound)."""
        device = self.model.device
        sync(device)
        t = time.perf_counter()
        for i in range(n):
            if self.step is not None:
                self.step(self.cache, self.token, self.context + i)
            else:
                decode_one(self.model, self.cache, self.token, self.context + i)
        sync(device)
        elapsed = (time.perf_counter() - t) / n
        self.cache.crop(self.context)
        return elapsed

    def head_only(self, n: int, rounds: int) -> float:
        """Seconds per token of the same step with no decoder layers (embedding, final norm, lm_head)."""
        layers = self.model.model.layers
        self.model.model.layers = torch.nn.ModuleList()
        try:
            from stepvoice.engine.compile import make_decode_step

            if self.step is not None:
                head = make_decode_step(self.model, compile=True)
                cache = head.new_cache(self.context + 64)
                head(cache, self.token, 0)
                times = []
                for _ in range(rounds):
                    sync(self.model.device)
                    t = time.perf_counter()
                    for i in range(n):
                        head(cache, self.token, i)
                    sync(self.model.device)
                    times.append((time.perf_counter() - t) / n)
                return statistics.median(times)
            cache = self.model.new_cache(64)
            prefill(self.model, cache, [self.token])
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                for i in range(n):
                    decode_one(self.model, cache, self.token, 1 + i)
                times.append((time.perf_counter() - t) / n)
                cache.crop(1)
            return statistics.median(times)
        finally:
            self.model.model.layers = layers


def bench_schemes(args: argparse.Namespace, device: torch.device) -> None:
    """Eager bf16 vs compiled bf16 vs int8 vs int4 decode at the real width, rounds interleaved."""
    config = real_width_config(args.layers)
    base = build(config, device, torch.bfloat16)
    print(f"real width 3584/18944, vocab {config.text_config.vocab_size}, {args.layers} layers, context "
          f"{args.context}, bf16 activations; {args.tokens} tokens x {args.rounds} interleaved rounds (medians)")
    runs = []
    for name in args.schemes:
        t = time.perf_counter()
        runs.append(SchemeRun(name, base, args.context, device))
        print(f"  built {name}: {time.perf_counter() - t:.0f} s (quantize + prefill + compile)", flush=True)
    times: dict[str, list[float]] = {r.name: [] for r in runs}
    for _ in range(args.rounds):  # A B C D, A B C D, ...: load changes hit every variant alike
        for r in runs:
            times[r.name].append(r.round(args.tokens))
    heads = {r.name: r.head_only(args.tokens, max(3, args.rounds // 2)) for r in runs}
    base_ms = statistics.median(times[runs[0].name]) * 1e3
    print(f"\n{'variant':<14} {'weights GB':>10} {'ms/token':>9} {'tok/s':>7} {'vs ' + runs[0].name:>15} "
          f"{'ms/layer':>9} {'head ms':>8} {'28-layer tok/s':>15}")
    for r in runs:
        ms = statistics.median(times[r.name]) * 1e3
        head = heads[r.name] * 1e3
        per_layer = max(ms - head, 0.0) / args.layers
        full = head + 28 * per_layer
        print(f"{r.name:<14} {r.bytes / 1e9:>10.2f} {ms:>9.1f} {1e3 / ms:>7.1f} {base_ms / ms:>14.2f}x "
              f"{per_layer:>9.1f} {head:>8.1f} {1e3 / full:>15.2f}")
    print("(28-layer extrapolation = head + 28 x per-layer time; weights = LLM layers + embeddings + lm_head)")
    if device.type == "cuda":  # decode reads every weight once per token: bytes / bandwidth bounds the speed
        bw = bandwidth_gbs(device) * 1e9
        for r in runs:
            ms = statistics.median(times[r.name]) * 1e3
            read = r.bytes - r.model.model.embed_tokens.weight.numel() * 2  # one embedding row is read, not all
            bound = bw / read
            print(f"  {r.name:<14} bound {bound:7.1f} tok/s at {bw / 1e9:.0f} GB/s; measured {1e3 / ms:7.1f} "
                  f"= {1e3 / ms / bound:4.0%} of the bound")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["small", "lm100m"], help="small, lm100m, real (GPU)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024, 2048])
    ap.add_argument("--tokens", type=int, default=32, help="cached tokens timed per context")
    ap.add_argument("--full-tokens", type=int, default=3, help="full-recomputation tokens timed per context")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--schemes", nargs="+", choices=list(SCHEME_VARIANTS), default=None,
                    help="instead of the presets: these weight schemes side by side at the real width")
    ap.add_argument("--layers", type=int, default=2, help="decoder layers for --schemes (2-4)")
    ap.add_argument("--context", type=int, default=256, help="tokens already in the cache for --schemes")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds for --schemes")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = parse_device(args.device)
    if args.schemes:
        print(f"device {device} ({torch.get_num_threads()} threads)")
        bench_schemes(args, device)
        return 0
    dtype = getattr(torch, args.dtype)
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {args.dtype}")
    for name in args.presets:
        bench_preset(name, args, device, dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
