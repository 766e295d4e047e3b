"""DiT estimator of the flow matching: predicts the velocity of the mel at time t.

Input per frame: [x, mu, speaker, cond] (4 x 80 = 320 channels) -> in_proj ->
blocks of (adaLN-modulated attention, causal conv block, MLP) -> adaLN final
layer -> 80 mel channels. Parameter names equal the checkpoint keys under
`decoder.estimator.`.

Streaming passes a `DiTCache` (per block: keys/values of earlier frames and
the last conv inputs) to `forward`, which returns the extended one. As in the
reference, the newest chunk's keys come first in the cache (attention is
order-free), which matters only for which frames a trimmed cache keeps.

For speed on CPU (same maths, float rounding aside): the modulation of each
affine-free LayerNorm is folded into the layer_norm call (both guidance halves
share t), gated residuals are added in place, the causal convs run as one GEMM
over unfolded windows on the (B, T, C) layout, and a whole utterance builds no
kv caches. In bf16/fp16 on the CPU two more (`reduced_cpu`): attention as two
matmuls and a softmax instead of torch's flash kernel, and fc1 + tanh-GELU as
one oneDNN call (see `attend`, `MLP.forward`). In bf16 on the CPU the GEMM
weights are packed once for oneDNN (`DiT.pack_weights`, engine.token2wav.cpu_gemm;
q, k and v as one GEMM), and a trimmed streaming cache is held as views
(`CachedKV`): both leave every output bit unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stepvoice.engine.token2wav import cpu_gemm
from stepvoice.engine.token2wav.config import DiTConfig
from stepvoice.engine.token2wav.cpu_gemm import PackedWeight

# A cache's keys and values (B, H, frames, D), each in parts along frames (newest first): a trimmed cache is two
# views of the old one, joined by the next chunk's concatenation, so trimming copies nothing.
CachedKV = tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]
SCORE_BUDGET = 8 * 2**20  # attention scores held at once by `attend` (elements): bounds memory on long utterances
NORM_EPS = 1e-6  # the affine-free LayerNorms around each sub-block
MAX_PERIOD = 10000.0  # timestep sinusoid


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _gated_add(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x + gate * y; in place (one pass, no temporaries) when no gradient is being recorded."""
    if torch.is_grad_enabled():
        return x + gate * y
    return x.addcmul_(y, gate)


def packed_weight_count(cfg: DiTConfig) -> int:
    """Elements of the weights `DiT.pack_weights` packs: per block q/k/v, proj, fc1, fc2, both convs."""
    h, inner, hidden = cfg.hidden_size, cfg.num_heads * cfg.head_dim, int(cfg.hidden_size * cfg.mlp_ratio)
    return cfg.depth * (4 * h * inner + 2 * h * hidden + 2 * h * h * cfg.conv_kernel_size)


def reduced_cpu(x: torch.Tensor) -> bool:
    """bf16/fp16 on the CPU at inference: where the fast paths below apply (fp32 keeps the plain ops)."""
    return x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16) and not torch.is_grad_enabled()


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v for q (B, H, Tq, D), k/v (B, H, Tk, D).

    On the CPU in bf16/fp16, torch's flash kernel runs its small tiles at a fraction of the
    GEMM rate: two batched matmuls and one softmax (which accumulates in fp32) measured 1.5x
    faster at 500 x 500 frames and 2-3x at a streaming chunk's 50 x 350 on a 2-core AVX512-BF16
    CPU. The scores are computed for as many query rows as SCORE_BUDGET allows at a time."""
    if not reduced_cpu(q):
        return F.scaled_dot_product_attention(q, k, v)
    q = q * q.shape[-1] ** -0.5  # scale the small side, not the scores
    keys = k.transpose(-1, -2)
    rows = max(1, SCORE_BUDGET // (q.shape[0] * q.shape[1] * k.shape[2]))
    if q.shape[2] <= rows:
        return torch.matmul(torch.softmax(torch.matmul(q, keys), dim=-1), v)
    parts = [torch.matmul(torch.softmax(torch.matmul(q[:, :, i:i + rows], keys), dim=-1), v)
             for i in range(0, q.shape[2], rows)]
    return torch.cat(parts, dim=2)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int, freq_dim: int, scale: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.freq_dim = freq_dim
        self.scale = scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (B,) in [0, 1] -> (B, hidden)."""
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32) / half).to(t)
        args = (t * self.scale)[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.freq_dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return self.mlp(emb)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.q_norm = nn.LayerNorm(head_dim)
        self.k_norm = nn.LayerNorm(head_dim)
        self.proj = nn.Linear(inner, dim)
        self.packs: dict[str, PackedWeight] = {}  # see `pack_weights`

    def pack_weights(self) -> dict[str, PackedWeight]:
        """q, k and v as one packed GEMM, and the output projection (cpu_gemm)."""
        layers = (self.to_q, self.to_k, self.to_v)
        self.packs = cpu_gemm.pack_each({"qkv": ([m.weight for m in layers], [m.bias for m in layers]),
                                         "proj": ([self.proj.weight], [self.proj.bias])})
        return self.packs

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = cpu_gemm.run(self.packs.get("qkv"), x)
        if qkv is not None:
            return qkv.split(self.num_heads * self.head_dim, dim=-1)
        return self.to_q(x), self.to_k(x), self.to_v(x)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, -1)  # (B, T, H, D)

    def forward(self, x: torch.Tensor, kv_cache: CachedKV | None = None,
                use_cache: bool = True) -> tuple[torch.Tensor, CachedKV | None]:
        """x (B, T, C); kv_cache: keys and values (B, H, cached, D) of earlier frames, in parts
        -> output and the new cache (newest frames first). Without `use_cache` no cache is built."""
        b, t, _ = x.shape
        # Per-head norms on the (B, T, H, D) layout, then heads-first views for SDPA.
        q, k, v = self._qkv(x)
        q = self.q_norm(self._heads(q)).transpose(1, 2)
        k = self.k_norm(self._heads(k)).transpose(1, 2)
        v = self._heads(v).transpose(1, 2)
        if kv_cache is not None:
            k = torch.cat([k, *kv_cache[0]], dim=2)
            v = torch.cat([v, *kv_cache[1]], dim=2)
        out = attend(q, k, v).transpose(1, 2).reshape(b, t, -1)
        projected = cpu_gemm.run(self.packs.get("proj"), out)
        return (self.proj(out) if projected is None else projected), (((k,), (v,)) if use_cache else None)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.packs: dict[str, PackedWeight] = {}  # see `pack_weights`

    def pack_weights(self) -> dict[str, PackedWeight]:
        self.packs = cpu_gemm.pack_each({name: ([m.weight], [m.bias]) for name, m in (("fc1", self.fc1),
                                                                                     ("fc2", self.fc2))})
        return self.packs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fc1 + tanh-GELU as one oneDNN call on the CPU in bf16/fp16: 3.2 ms instead of 4.5 ms at
        # 1000 x 512 -> 2048 on 2 cores, rounded once instead of twice. Not under torch.compile:
        # inductor fuses the GELU itself and cannot lower this call when the weights are graph
        # inputs (shared blocks, see `DiT.compile_blocks`).
        h = cpu_gemm.run(self.packs.get("fc1"), x, "gelu", "tanh")
        if h is None and reduced_cpu(x) and not torch.compiler.is_compiling():
            h = cpu_gemm.linear(x, self.fc1.weight, self.fc1.bias, "gelu", "tanh")
        if h is None:
            h = F.gelu(self.fc1(x), approximate="tanh")
        out = cpu_gemm.run(self.packs.get("fc2"), h)
        return self.fc2(h) if out is None else out


class CausalConvBlock(nn.Module):
    """causal conv -> LayerNorm -> Mish -> causal conv, over time.

    The checkpoint stores these as `block.1` (conv), `block.3` (norm) and
    `block.6` (conv) of a Sequential that also held transposes; the Identity
    slots keep those indices."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.pad = kernel_size - 1
        self.block = nn.Sequential(
            nn.Identity(), nn.Conv1d(channels, channels, kernel_size), nn.Identity(),
            nn.LayerNorm(channels), nn.Mish(), nn.Identity(), nn.Conv1d(channels, channels, kernel_size),
        )
        self.packs: dict[int, PackedWeight] = {}  # see `pack_weights`; keyed by index in `block`

    def pack_weights(self) -> dict[int, PackedWeight]:
        self.packs = cpu_gemm.pack_each({i: ([self.block[i].weight], [self.block[i].bias]) for i in (1, 6)})
        return self.packs

    def _conv(self, index: int, x: torch.Tensor, tail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal conv over time on the (B, T, C) layout, as one GEMM over unfolded windows
        (no transposes). `tail`: the previous chunk's last inputs (B, K-1, C), zeros at the start."""
        conv = self.block[index]
        b, t, c = x.shape
        if tail is None:
            tail = x.new_zeros(b, self.pad, c)
        padded = torch.cat([tail, x], dim=1)  # (B, T+K-1, C)
        windows = padded.unfold(1, self.pad + 1, 1).reshape(b * t, -1)  # (B*T, C*K), (c, k) order
        out = cpu_gemm.run(self.packs.get(index), windows)
        if out is None:
            out = torch.addmm(conv.bias, windows, conv.weight.view(conv.out_channels, -1).t())
        return out.view(b, t, -1), padded[:, -self.pad:]

    def forward(self, x: torch.Tensor, tails: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, C); tails: the last inputs of both convs from the previous chunk."""
        t1, t2 = tails if tails is not None else (None, None)
        y, t1 = self._conv(1, x, t1)
        y = F.mish(self.block[3](y), inplace=True)
        y, t2 = self._conv(6, y, t2)
        return y, (t1, t2)


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        h = cfg.hidden_size
        # norm1 (attention), norm2 (MLP), norm3 (conv): affine-free LayerNorms, see `_norm`.
        self.attn = Attention(h, cfg.num_heads, cfg.head_dim)
        self.mlp = MLP(h, int(h * cfg.mlp_ratio))
        self.conv = CausalConvBlock(h, cfg.conv_kernel_size)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(h, 9 * h))

    def _norm(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """modulate(LayerNorm(x), shift, scale) in one layer_norm call when the modulation is
        shared by the whole batch (always so in flow matching: both guidance halves share t)."""
        if shift.shape[0] == 1:
            return F.layer_norm(x, x.shape[-1:], (1 + scale).view(-1), shift.view(-1), NORM_EPS)
        return modulate(F.layer_norm(x, x.shape[-1:], eps=NORM_EPS), shift, scale)

    def forward(self, x: torch.Tensor, c: torch.Tensor, kv_cache: CachedKV | None = None,
                conv_tails: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = True):
        """x (B, T, C), c (B or 1, 1, C) -> x, new kv cache, new conv tails (x updated in place
        under no-grad / inference mode)."""
        return self.forward_modulated(x, self.adaLN_modulation(c).chunk(9, dim=-1), kv_cache, conv_tails, use_cache)

    def forward_modulated(self, x: torch.Tensor, mods: tuple[torch.Tensor, ...], kv_cache: CachedKV | None = None,
                          conv_tails: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = True):
        """`forward` with the 9 adaLN vectors already computed (they depend on t only: see
        `DiT.step_modulations`)."""
        (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp,
         shift_conv, scale_conv, gate_conv) = mods
        att, kv_cache = self.attn(self._norm(x, shift_msa, scale_msa), kv_cache, use_cache)
        x = _gated_add(x, att, gate_msa)
        conv, conv_tails = self.conv(self._norm(x, shift_conv, scale_conv), conv_tails)
        x = _gated_add(x, conv, gate_conv)
        x = _gated_add(x, self.mlp(self._norm(x, shift_mlp, scale_mlp)), gate_mlp)
        return x, kv_cache, conv_tails


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=NORM_EPS)
        self.linear = nn.Linear(hidden, out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.forward_modulated(x, self.adaLN_modulation(c).chunk(2, dim=-1))

    def forward_modulated(self, x: torch.Tensor, mods: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        shift, scale = mods
        return self.linear(modulate(self.norm_final(x), shift, scale))


def run_block(block: DiTBlock, h: torch.Tensor, mods: tuple[torch.Tensor, ...], kv: CachedKV | None,
              tails: tuple[torch.Tensor, torch.Tensor] | None, use_cache: bool):
    """One block step (a free function so that one compiled graph serves every block)."""
    return block.forward_modulated(h, mods, kv, tails, use_cache)


@dataclass(frozen=True)
class DiTCache:
    """One estimator call's streaming state: per block keys/values and conv tails."""

    kv: tuple[CachedKV, ...]
    conv: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @property
    def frames(self) -> int:
        return sum(part.shape[2] for part in self.kv[0][0])

    def keep(self, first: int, last: int) -> "DiTCache":
        """Keep the first `first` and the last `last` cached frames (the reference's trim), as
        two views: the next chunk's concatenation copies them once, as it copies any cache."""
        def trim(parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
            whole = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
            return whole[:, :, :first], whole[:, :, -last:]

        return DiTCache(tuple((trim(k), trim(v)) for k, v in self.kv), self.conv)


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.t_embedder = TimestepEmbedder(cfg.hidden_size, cfg.frequency_embedding_size, cfg.timestep_scale)
        self.in_proj = nn.Linear(cfg.in_channels, cfg.hidden_size)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg.hidden_size, cfg.out_channels)
        self.block_fn = None  # `run_block` through torch.compile (see `compile_blocks`), else eager

    def compile_blocks(self) -> None:
        """torch.compile (inductor, dynamic shapes) of one block step. The blocks share their code
        and torch passes their weights as graph inputs, so all of them reuse one compiled graph
        per cache layout (whole utterance, stream start, later chunks): compile time does not
        grow with the depth."""
        self.block_fn = torch.compile(run_block, dynamic=True)
        for block in self.blocks:  # inductor packs weights itself: the oneDNN copies would only take memory
            block.attn.packs, block.mlp.packs, block.conv.packs = {}, {}, {}

    def pack_weights(self) -> int:
        """Pack every block's GEMM weights for oneDNN (bf16 on the CPU, see `cpu_gemm`): for
        inference after the weights are loaded and placed. Returns the bytes the packed copies
        take (0 where nothing could be packed)."""
        packs = []
        for block in self.blocks:
            for part in (block.attn, block.mlp, block.conv):
                packs += part.pack_weights().values()
        return sum(p.nbytes for p in packs)

    # ---- the parts of a velocity evaluation that do not change across Euler steps
    def condition(self, mu: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor) -> Conditioning:
        """in_proj of [x, mu, speaker, cond] = W_x x + (W_mu mu + W_spk speaker + W_cond cond + b):
        the bracket is fixed for a whole solve, so it is computed once here, not at every step.
        mu, cond (B, 80, T); spks (B, 80)."""
        n = mu.shape[1]
        w, b = self.in_proj.weight, self.in_proj.bias
        h = F.linear(torch.cat([mu, cond], dim=1).transpose(1, 2),
                     torch.cat([w[:, n:2 * n], w[:, 3 * n:4 * n]], dim=1), b)
        h = h + F.linear(spks, w[:, 2 * n:3 * n]).unsqueeze(1)
        return Conditioning(w[:, :n].contiguous(), h)

    def step_modulations(self, t: torch.Tensor) -> list[StepModulation]:
        """t (S,): one time per Euler step -> per step the adaLN vectors of every block and of
        the final layer, each (1, 1, C): one batched GEMM per block for all steps."""
        c = self.t_embedder(t)  # (S, C)
        per_block = [block.adaLN_modulation(c) for block in self.blocks]  # (S, 9C) each
        final = self.final_layer.adaLN_modulation(c)  # (S, 2C)
        return [StepModulation(tuple(m[s].view(1, 1, -1).chunk(9, dim=-1) for m in per_block),
                               final[s].view(1, 1, -1).chunk(2, dim=-1)) for s in range(t.shape[0])]

    def velocity(self, x: torch.Tensor, cond: Conditioning, mods: StepModulation, cache: DiTCache | None,
                 use_cache: bool) -> tuple[torch.Tensor, DiTCache | None]:
        """One Euler step's estimator call with its invariants precomputed: x (B, 80, T) ->
        velocity (B, 80, T) and the new cache (None without `use_cache`)."""
        h = torch.addmm(cond.h.flatten(0, 1), x.transpose(1, 2).reshape(-1, x.shape[1]), cond.w_x.t())
        h = h.view(cond.h.shape)
        kv_in = cache.kv if cache is not None else (None,) * len(self.blocks)
        conv_in = cache.conv if cache is not None else (None,) * len(self.blocks)
        kv_out, conv_out = [], []
        run = self.block_fn or run_block
        for block, block_mods, kv, tails in zip(self.blocks, mods.blocks, kv_in, conv_in):
            h, kv, tails = run(block, h, block_mods, kv, tails, use_cache)
            kv_out.append(kv)
            conv_out.append(tails)
        new_cache = DiTCache(tuple(kv_out), tuple(conv_out)) if use_cache else None
        return self.final_layer.forward_modulated(h, mods.final).transpose(1, 2), new_cache

    def forward(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, spks: torch.Tensor,
                cond: torch.Tensor, cache: DiTCache | None = None,
                use_cache: bool = True) -> tuple[torch.Tensor, DiTCache | None]:
        """x, mu, cond (B, 80, T); t (B,); spks (B, 80) -> velocity (B, 80, T) and the new cache
        (None without `use_cache`). One-off calls; the solver uses condition/step_modulations/velocity."""
        if t.numel() > 1 and bool((t == t[:1]).all()):
            t = t[:1]  # one time for the whole batch: modulate once, fused into the norms
        c = self.t_embedder(t).unsqueeze(1)  # (B or 1, 1, C)
        mods = StepModulation(tuple(block.adaLN_modulation(c).chunk(9, dim=-1) for block in self.blocks),
                              self.final_layer.adaLN_modulation(c).chunk(2, dim=-1))
        return self.velocity(x, self.condition(mu, spks, cond), mods, cache, use_cache)


@dataclass(frozen=True)
class Conditioning:
    """A solve's fixed estimator input: the x columns of in_proj and the projection of the rest."""

    w_x: torch.Tensor  # (C, 80)
    h: torch.Tensor  # (B, T, C)


@dataclass(frozen=True)
class StepModulation:
    """One Euler step's adaLN vectors: 9 per block, 2 for the final layer (each (1 or B, 1, C))."""

    blocks: tuple[tuple[torch.Tensor, ...], ...]
    final: tuple[torch.Tensor, torch.Tensor]
