"""Decode one token with fixed shapes, so `torch.compile` captures the step once.

Eager transformers code pays Python and dispatcher overhead in every layer
of every token; at one token per step that overhead, not the arithmetic,
sets the speed. `decode_step_fn` is the whole one-token forward written
against a `StaticKVCache`: every tensor has the same shape at every position
(the attention reads the full-capacity buffers under a position mask), and
the position is a tensor input, not a Python int, so nothing specializes on
it. `make_decode_step` is the factory that returns it compiled (or not).

The step calls the model's own modules (norms, projections, MLP, lm_head),
so weights quantized by `engine.quantize` (torchao tensor subclasses) are
used as they are and fused by the compiler. Prefill stays eager (prompt
lengths vary; one eager pass per turn is cheap next to hundreds of steps).

`compile`: "auto" compiles on CUDA, and for int8 weights (whose uncompiled
matmul is slow); otherwise not on the CPU, where the first compile takes
longer than answering one question saves. "on" compiles everywhere. On CUDA the mode is "reduce-overhead" (CUDA graphs).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)
COMPILE_CHOICES = ("auto", "on", "off")


def should_compile(setting: str | bool | None, device: torch.device, quantize: str | None = "none") -> bool:
    """auto: on for CUDA, and for int8 weights anywhere (torchao's int8 matmul is ~10x slower than bf16
    uncompiled on the CPU, faster compiled: bench/engine_decode.py); on/off (or True/False) as given."""
    if isinstance(setting, bool):
        return setting
    value = (setting or "auto").lower()
    if value not in COMPILE_CHOICES:
        from stepvoice.engine.errors import ConfigError

        raise ConfigError(f"compile must be auto, on or off, not {setting!r}")
    return value == "on" or (value == "auto" and (device.type == "cuda" or quantize == "int8"))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def decode_step_fn(model: Any, token: torch.Tensor, position: torch.Tensor,
                   keys: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
    """Logits [vocab] of one token (`token` [1, 1] long) at `position` ([1] long).

    Writes its keys/values at `position` into the full buffers `keys[i]` /
    `values[i]` (1, kv_heads, capacity, head_dim) and attends to positions
    <= `position`. Matches transformers' Qwen2 (RoPE, GQA, RMSNorm, SiLU MLP).
    """
    qwen = model.model
    cfg = model.qwen2_config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    capacity = keys[0].shape[-2]

    h = qwen.embed_tokens(token)  # (1, 1, hidden)
    rotary = qwen.rotary_emb
    freqs = position.to(torch.float32)[:, None] * rotary.inv_freq.to(torch.float32)[None, :]  # (1, head_dim/2)
    angles = torch.cat((freqs, freqs), dim=-1)
    scaling = getattr(rotary, "attention_scaling", 1.0)
    cos = (angles.cos() * scaling).to(h.dtype)[None, None]  # (1, 1, 1, head_dim)
    sin = (angles.sin() * scaling).to(h.dtype)[None, None]
    visible = (torch.arange(capacity, device=token.device) <= position)[None, None, None, :]  # (1, 1, 1, C)

    for i, layer in enumerate(qwen.layers):
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        q = attn.q_proj(x).view(1, 1, n_heads, head_dim).transpose(1, 2)  # (1, H, 1, D)
        k = attn.k_proj(x).view(1, 1, n_kv, head_dim).transpose(1, 2)  # (1, KV, 1, D)
        v = attn.v_proj(x).view(1, 1, n_kv, head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        keys[i].index_copy_(2, position, k)
        values[i].index_copy_(2, position, v)
        out = F.scaled_dot_product_attention(q, keys[i], values[i], attn_mask=visible, enable_gqa=n_kv != n_heads)
        h = h + attn.o_proj(out.transpose(1, 2).reshape(1, 1, n_heads * head_dim))
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return model.lm_head(qwen.norm(h))[0, -1]


class DecodeStep:
    """`step(cache, token_id, position) -> logits [vocab]` over a StaticKVCache."""

    def __init__(self, model: Any, compiled: bool, fn: Callable[..., torch.Tensor]):
        self.model = model
        self.compiled = compiled
        self._fn = fn
        self.warmup_s: float | None = None

    def new_cache(self, capacity: int) -> Any:
        """A StaticKVCache on the model's device and dtype, for at least `capacity` positions."""
        from stepvoice.engine.kv_cache import StaticKVCache

        cfg = self.model.qwen2_config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return StaticKVCache(cfg.num_hidden_layers, capacity_bucket(capacity), cfg.num_key_value_heads, head_dim,
                             self.model.device, self.model.dtype)

    @torch.no_grad()
    def __call__(self, cache: Any, token_id: int, position: int) -> torch.Tensor:
        device = self.model.device
        cache.ensure_capacity(position + 1)
        keys, values = cache.buffers()
        if self.compiled and device.type == "cuda":
            # CUDA graphs replay fixed addresses: buffers written in place must be declared static.
            for t in keys + values:
                torch._dynamo.mark_static_address(t)
        token = torch.tensor([[token_id]], dtype=torch.long, device=device)
        pos = torch.tensor([position], dtype=torch.long, device=device)
        logits = self._fn(self.model, token, pos, keys, values)
        cache.set_length(position + 1)
        if self.compiled and device.type == "cuda":
            logits = logits.clone()  # a CUDA-graph output is overwritten by the next replay
        return logits

    def warm_up(self, capacity: int = 64, steps: int = 3) -> float:
        """Run a few steps on a scratch cache so compilation happens now, not in the first reply;
        returns the seconds it took."""
        start = time.perf_counter()
        cache = self.new_cache(capacity)
        for position in range(steps):
            self(cache, 0, position)
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
        self.warmup_s = time.perf_counter() - start
        log.info("decode step warm-up (%s): %.1f s", "compiled" if self.compiled else "eager", self.warmup_s)
        return self.warmup_s


def capacity_bucket(n: int, smallest: int = 1024) -> int:
    """Caches come in power-of-two sizes, so a compiled step sees few distinct shapes
    (each size is one compilation) however long the prompts are."""
    size = smallest
    while size < n:
        size *= 2
    return size


def make_decode_step(model: Any, compile: bool = False, mode: str | None = None) -> DecodeStep:
    """The decode-one-token callable for `model`, compiled once here when `compile`.

    Shapes are static (dynamic=False) and the whole step is one graph
    (fullgraph=True): a graph break would bring the per-layer overhead back.
    """
    if not compile:
        return DecodeStep(model, False, decode_step_fn)
    if mode is None:
        mode = "reduce-overhead" if model.device.type == "cuda" else "default"
    fn = torch.compile(decode_step_fn, mode=mode, fullgraph=True, dynamic=False)
    return DecodeStep(model, True, fn)
