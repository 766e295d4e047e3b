"""Upsampling Conformer encoder of the flow (speech-code embeddings -> 50 Hz features).

Linear input layer, a causal pre-look-ahead block, 6 Conformer blocks with
relative-position self-attention (Transformer-XL style, ESPnet positions),
x2 nearest upsampling + conv, 4 more Conformer blocks, final LayerNorm.
Parameter names equal the checkpoint keys under `encoder.`.

Two ways to run it: `forward` (a whole utterance) and `forward_chunk`
(streaming; keys/values and conv tails of earlier chunks live in an
`EncoderCache` owned by the caller's stream).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stepvoice.engine.token2wav.config import EncoderConfig

LAYER_NORM_EPS = 1e-5  # input layer and after_norm
BLOCK_NORM_EPS = 1e-12  # inside the Conformer blocks
PRE_LOOKAHEAD_CONV2_KERNEL = 3


def relative_positions(size: int, d_model: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoids for relative distances size-1 ... -(size-1): (1, 2*size-1, d_model)."""
    distance = torch.arange(size - 1, -size, -1, dtype=torch.float32, device=device).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
                         * -(math.log(10000.0) / d_model))
    pe = torch.zeros(2 * size - 1, d_model, device=device)
    pe[:, 0::2] = torch.sin(distance * inv_freq)
    pe[:, 1::2] = torch.cos(distance * inv_freq)
    return pe.unsqueeze(0).to(dtype)


def shift_relative(scores: torch.Tensor) -> torch.Tensor:
    """Transformer-XL shift: (B, H, T1, 2S-1) scores by relative distance -> (B, H, T1, S) by key.

    Prepends a zero column, drops the first T1 values of the flattened rows and
    keeps S columns, exactly the memory trick of the reference (which also
    defines the result when T1 < S, i.e. with cached keys)."""
    b, h, t1, n = scores.shape
    padded = torch.cat([scores.new_zeros(b, h, t1, 1), scores], dim=-1)
    shifted = padded.reshape(b, h, t1 * (n + 1))[:, :, t1:].reshape(b, h, t1, n)
    return shifted[..., : n // 2 + 1]


class LinearInput(nn.Module):
    """Linear -> LayerNorm, then scaled by sqrt(d) (`embed` / `up_embed`)."""

    def __init__(self, idim: int, odim: int):
        super().__init__()
        # Dropout keeps index 2 so the keys stay `out.0.*`, `out.1.*`.
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=LAYER_NORM_EPS), nn.Dropout(0.0))
        self.xscale = math.sqrt(odim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x) * self.xscale


class RelPositionAttention(nn.Module):
    def __init__(self, n_head: int, n_feat: int, key_bias: bool):
        super().__init__()
        self.h = n_head
        self.d_k = n_feat // n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat, bias=key_bias)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(self.h, self.d_k))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.d_k)  # (B, T, H, D)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor,
                kv_cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T1, C), pos_emb (1, 2S-1, C) with S = cached + T1; kv_cache (B, H, cached, 2D).
        Returns output (B, T1, C) and the new kv cache (B, H, S, 2D)."""
        b, t1, _ = x.shape
        q = self._heads(self.linear_q(x))
        k = self._heads(self.linear_k(x)).transpose(1, 2)  # (B, H, T1, D)
        v = self._heads(self.linear_v(x)).transpose(1, 2)
        if kv_cache is not None and kv_cache.shape[2] > 0:
            k_old, v_old = kv_cache.split(self.d_k, dim=-1)
            k = torch.cat([k_old, k], dim=2)
            v = torch.cat([v_old, v], dim=2)
        new_cache = torch.cat([k, v], dim=-1)
        p = self._heads(self.linear_pos(pos_emb)).transpose(1, 2)  # (1, H, 2S-1, D)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        content = q_u @ k.transpose(-2, -1)  # (B, H, T1, S)
        position = q_v @ p.transpose(-2, -1)  # (B, H, T1, 2S-1)
        if position.shape != content.shape:
            position = shift_relative(position)
        attn = torch.softmax((content + position) / math.sqrt(self.d_k), dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, t1, self.h * self.d_k)
        return self.linear_out(out), new_cache


class FeedForward(nn.Module):
    def __init__(self, idim: int, hidden: int):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden)
        self.w_2 = nn.Linear(hidden, idim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerBlock(nn.Module):
    """Pre-LN block: x + attn(norm_mha(x)); x + ff(norm_ff(x)) (no conv module in this model)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.self_attn = RelPositionAttention(cfg.attention_heads, cfg.output_size, cfg.key_bias)
        self.feed_forward = FeedForward(cfg.output_size, cfg.linear_units)
        self.norm_ff = nn.LayerNorm(cfg.output_size, eps=BLOCK_NORM_EPS)
        self.norm_mha = nn.LayerNorm(cfg.output_size, eps=BLOCK_NORM_EPS)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor,
                kv_cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        att, new_cache = self.self_attn(self.norm_mha(x), pos_emb, kv_cache)
        x = x + att
        x = x + self.feed_forward(self.norm_ff(x))
        return x, new_cache


class PreLookahead(nn.Module):
    """Each frame sees `pre_lookahead_len` future frames (conv1), then 2 past ones (conv2)."""

    def __init__(self, channels: int, pre_lookahead_len: int):
        super().__init__()
        self.pre_lookahead_len = pre_lookahead_len
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=pre_lookahead_len + 1)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=PRE_LOOKAHEAD_CONV2_KERNEL)

    @property
    def tail(self) -> int:
        return PRE_LOOKAHEAD_CONV2_KERNEL - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole utterance: the future of the last frames is zeros. x (B, T, C)."""
        y = F.pad(x.transpose(1, 2), (0, self.pre_lookahead_len))
        y = F.leaky_relu(self.conv1(y))
        y = self.conv2(F.pad(y, (self.tail, 0)))
        return y.transpose(1, 2) + x

    def forward_chunk(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) whose last `pre_lookahead_len` frames are look-ahead only -> (B, T-L, C)."""
        y = F.leaky_relu(self.conv1(x.transpose(1, 2)))
        if cache is None:
            cache = y.new_zeros(y.shape[0], y.shape[1], self.tail)
        new_cache = y[..., -self.tail:]
        y = self.conv2(torch.cat([cache, y], dim=2))
        return y.transpose(1, 2) + x[:, : -self.pre_lookahead_len], new_cache


class Upsample(nn.Module):
    """Nearest x`stride` repeat, then a causal conv of kernel 2*stride+1."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(channels, channels, stride * 2 + 1)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, T) -> (B, C, T*stride) and the new conv tail (B, C, 2*stride)."""
        y = x.repeat_interleave(self.stride, dim=2)
        if cache is None:
            cache = y.new_zeros(y.shape[0], y.shape[1], self.stride * 2)
        y = torch.cat([cache, y], dim=2)
        return self.conv(y), y[..., -self.stride * 2:]


@dataclass(frozen=True)
class EncoderCache:
    """Streaming state of one utterance: kv caches (per block) and conv tails."""

    kv: tuple[torch.Tensor, ...]  # blocks first, then up-blocks: (B, H, frames, 2D)
    lookahead_tail: torch.Tensor  # (B, C, 2)
    upsample_tail: torch.Tensor  # (B, C, 2*stride)

    @property
    def offset(self) -> int:
        """Code frames already encoded."""
        return self.kv[0].shape[2]


class UpsampleConformerEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.output_size
        self.embed = LinearInput(cfg.input_size, d)
        self.pre_lookahead_layer = PreLookahead(d, cfg.pre_lookahead_len)
        self.encoders = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_blocks))
        self.up_layer = Upsample(d, cfg.up_stride)
        self.up_embed = LinearInput(cfg.input_size, d)
        self.up_encoders = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_up_blocks))
        self.after_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)

    def _positions(self, size: int, like: torch.Tensor) -> torch.Tensor:
        return relative_positions(size, self.cfg.output_size, like.device, like.dtype)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Whole utterance, no padding: (B, T, input_size) -> (B, T*stride, output_size)."""
        xs = self.pre_lookahead_layer(self.embed(xs))
        pos = self._positions(xs.shape[1], xs)
        for block in self.encoders:
            xs, _ = block(xs, pos)
        xs, _ = self.up_layer(xs.transpose(1, 2))
        xs = self.up_embed(xs.transpose(1, 2))
        pos = self._positions(xs.shape[1], xs)
        for block in self.up_encoders:
            xs, _ = block(xs, pos)
        return self.after_norm(xs)

    def forward_chunk(self, xs: torch.Tensor, cache: EncoderCache | None,
                      last_chunk: bool) -> tuple[torch.Tensor, EncoderCache]:
        """One chunk (B, T, input_size) whose last `pre_lookahead_len` frames are look-ahead
        (unless `last_chunk`, where the look-ahead is zeros) -> (B, T', output_size)."""
        n_first = len(self.encoders)
        old_kv = cache.kv if cache is not None else (None,) * (n_first + len(self.up_encoders))
        offset = cache.offset if cache is not None else 0
        xs = self.embed(xs)
        if last_chunk:
            xs = F.pad(xs, (0, 0, 0, self.cfg.pre_lookahead_len))
        xs, lookahead_tail = self.pre_lookahead_layer.forward_chunk(
            xs, cache.lookahead_tail if cache is not None else None)
        pos = self._positions(offset + xs.shape[1], xs)
        new_kv = []
        for block, kv in zip(self.encoders, old_kv[:n_first]):
            xs, kv = block(xs, pos, kv)
            new_kv.append(kv)
        xs, upsample_tail = self.up_layer(xs.transpose(1, 2), cache.upsample_tail if cache is not None else None)
        xs = self.up_embed(xs.transpose(1, 2))
        pos = self._positions(offset * self.cfg.up_stride + xs.shape[1], xs)
        for block, kv in zip(self.up_encoders, old_kv[n_first:]):
            xs, kv = block(xs, pos, kv)
            new_kv.append(kv)
        return self.after_norm(xs), EncoderCache(tuple(new_kv), lookahead_tail, upsample_tail)
