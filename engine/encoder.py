"""The audio encoder (Whisper-style) and the adapter that maps it to LLM width.

Module and parameter names equal the checkpoint keys under `encoder.` and
`adapter.` (reference §1), so weights load with no renaming.

    mel [B, 128, T] -> conv1 (k3, p1) -> GELU -> conv2 (k3, s2, p1) -> GELU
      -> + positional table -> n_audio_layer pre-LN blocks (key-padding mask)
      -> AvgPool1d(2, 2) -> after_norm                        [B, (T+1)//2//2, state]
    adapter: conv (k3, s2, p1) -> GELU -> linear1 -> ReLU -> linear2   [B, ., llm_dim]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stepvoice.engine.config import AudioEncoderConfig


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the weights' dtype (as Whisper does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class EncoderAttention(nn.Module):
    """Multi-head self-attention; q and k each scaled by head_dim^-0.25, no key bias."""

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        head_dim = C // self.n_head
        scale = head_dim**-0.25
        q = self.query(x).view(B, T, self.n_head, head_dim).transpose(1, 2) * scale  # (B, H, T, D)
        k = self.key(x).view(B, T, self.n_head, head_dim).transpose(1, 2) * scale
        v = self.value(x).view(B, T, self.n_head, head_dim).transpose(1, 2)
        # Both scales are already applied, so sdpa must not scale again.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias, scale=1.0)  # (B, H, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class EncoderBlock(nn.Module):
    """Pre-LN residual block: attention then a 4x GELU MLP."""

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.attn = EncoderAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = LayerNorm(n_state)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), key_bias)
        return x + self.mlp(self.mlp_ln(x))


def key_padding_bias(lengths: torch.Tensor, n_frames: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias (B, 1, 1, ceil(T/2)) for conv2's output frames.

    The non-pad mask over the T mel frames (`lengths` valid each) is sampled at
    every second frame starting at (T+1) % 2, as the official model does;
    padded keys get a large negative bias.
    """
    frames = torch.arange(n_frames, device=lengths.device)
    valid = frames[None, :] < lengths[:, None]  # (B, T)
    valid = valid[:, (n_frames + 1) % 2 :: 2]  # (B, ceil(T/2))
    bias = torch.zeros(valid.shape, dtype=dtype, device=lengths.device)
    # -1e10 as the official model; fp16 cannot hold it, and -1e4 already gives exp() == 0.
    bias.masked_fill_(~valid, -1e4 if dtype == torch.float16 else -1e10)
    return bias[:, None, None, :]


class AudioEncoder(nn.Module):
    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        n_state = config.n_audio_state
        self.conv1 = nn.Conv1d(config.n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.positional_embedding = nn.Embedding(config.n_audio_ctx, n_state)
        self.blocks = nn.ModuleList(EncoderBlock(n_state, config.n_audio_head) for _ in range(config.n_audio_layer))
        self.avg_pooler = nn.AvgPool1d(2, stride=2)
        self.after_norm = LayerNorm(n_state)

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mels (B, n_mels, T) zero-padded; lengths (B,) valid frames minus 2, as the
        official `wav_lens`. Returns (B, (T+1)//2//2, state) and the valid lengths."""
        T = mels.shape[-1]
        x = F.gelu(self.conv1(mels))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, ceil(T/2), state)
        if x.shape[1] > self.positional_embedding.num_embeddings:
            raise ValueError(
                f"audio piece too long for the encoder: {x.shape[1]} frames > n_audio_ctx "
                f"{self.positional_embedding.num_embeddings} (split audio into 25 s pieces)"
            )
        x = x + self.positional_embedding.weight[: x.shape[1]].to(x.dtype)
        bias = key_padding_bias(lengths, T, x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        x = self.avg_pooler(x.transpose(1, 2)).transpose(1, 2)  # (B, ceil(T/2)//2, state)
        return self.after_norm(x), (lengths + 1) // 2 // 2


class Adapter(nn.Module):
    """Downsamples the encoder output 2x and projects it to the LLM width."""

    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        n_state = config.n_audio_state
        self.conv = nn.Conv1d(n_state, n_state, config.kernel_size, config.adapter_stride, padding=1)
        self.linear1 = nn.Linear(n_state, config.adapter_hidden_size)
        self.linear2 = nn.Linear(config.adapter_hidden_size, config.llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, L', state)
        return self.linear2(F.relu(self.linear1(x)))
