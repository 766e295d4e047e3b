"""HiFT vocoder: 80-band mel (50 Hz) -> 24 kHz waveform.

A ConvRNN F0 predictor drives a neural source filter (sum of harmonics of
F0 plus noise); the generator upsamples the mel by 8 x 5 x 3 with Snake
residual blocks, mixing in the source's STFT at each scale, and ends in an
inverse STFT (n_fft 16, hop 4): 480 samples per mel frame. Parameter names
equal the keys of `hift.pt` (less its `generator.` prefix); weight-normed
convs use torch's parametrizations (older `weight_g`/`weight_v` keys load
too), and `fold_weight_norm` bakes them for inference.

`set_decode_dtype(torch.bfloat16)` runs the generator's conv stack (conv_pre
to conv_post, 94% of the time on a CPU) in bf16 while the F0 predictor, the
sine source and the STFT/iSTFT stay fp32: the source integrates phase over
thousands of samples (8 mantissa bits would detune it), the convs only add
relative rounding (waveform SNR 45.7 dB against fp32, 1.8x faster: README).

The source draws random numbers (harmonic start phases, noise) from a
`torch.Generator` passed in, in the reference's order, so that a seeded
generator gives the same waveform as the reference under the same seed.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from stepvoice.engine.token2wav.config import HiFTConfig

SNAKE_EPS = 1e-9
POST_LRELU_SLOPE = 0.01  # the (default-slope) leaky ReLU before conv_post
MAX_MAGNITUDE = 1e2


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha, per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.unsqueeze(0).unsqueeze(-1)
        return x + (1.0 / (alpha + SNAKE_EPS)) * torch.pow(torch.sin(x * alpha), 2)


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_padding(kernel, d)))
            for d in dilations)
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=1, padding=_padding(kernel)))
            for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations1, self.activations2):
            x = c2(a2(c1(a1(x)))) + x
        return x


class ConvRNNF0Predictor(nn.Module):
    def __init__(self, in_channels: int, cond_channels: int, num_layers: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [weight_norm(nn.Conv1d(in_channels if i == 0 else cond_channels, cond_channels, 3, padding=1)),
                       nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 80, T) -> F0 in Hz (B, T)."""
        x = self.condnet(mel).transpose(1, 2)
        return torch.abs(self.classifier(x).squeeze(-1))


class SineSource(nn.Module):
    """Neural source filter: harmonics of F0 (random start phases) + noise, merged by a linear layer."""

    def __init__(self, cfg: HiFTConfig):
        super().__init__()
        self.cfg = cfg
        self.upsample = cfg.samples_per_frame
        self.l_linear = nn.Linear(cfg.nb_harmonics + 1, 1)

    def _sines(self, f0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """f0 (B, L, 1) per sample -> (B, L, harmonics) sines, phase integrated at frame rate."""
        b, _, _ = f0.shape
        dim = self.cfg.nb_harmonics + 1
        harmonics = f0 * torch.arange(1, dim + 1, dtype=f0.dtype, device=f0.device).view(1, 1, dim)
        rad = (harmonics / self.cfg.sampling_rate) % 1
        start = torch.rand(b, dim, generator=generator, device=f0.device, dtype=f0.dtype)
        start[:, 0] = 0  # the fundamental starts at phase 0
        rad[:, 0, :] = rad[:, 0, :] + start
        rad = F.interpolate(rad.transpose(1, 2), scale_factor=1 / self.upsample, mode="linear").transpose(1, 2)
        phase = torch.cumsum(rad, dim=1) * 2 * np.pi
        phase = F.interpolate(phase.transpose(1, 2) * self.upsample, scale_factor=self.upsample,
                              mode="linear").transpose(1, 2)
        return torch.sin(phase)

    def forward(self, f0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """f0 (B, L, 1) Hz per sample -> excitation (B, L, 1)."""
        cfg = self.cfg
        with torch.no_grad():
            sines = self._sines(f0, generator) * cfg.nsf_alpha
            voiced = (f0 > cfg.nsf_voiced_threshold).to(f0.dtype)
            noise_amp = voiced * cfg.nsf_sigma + (1 - voiced) * cfg.nsf_alpha / 3
            # Filled in the memory order of `sines` (a transposed view), as the reference's randn_like.
            noise = noise_amp * torch.empty_like(sines).normal_(generator=generator)
            sines = sines * voiced + noise
        merged = torch.tanh(self.l_linear(sines))
        # The reference also draws a noise branch it never uses; draw it too so the generator stays in step.
        torch.randn(voiced.shape, generator=generator, device=f0.device, dtype=f0.dtype)
        return merged


class HiFTGenerator(nn.Module):
    def __init__(self, cfg: HiFTConfig | None = None):
        super().__init__()
        cfg = cfg or HiFTConfig()
        self.cfg = cfg
        n_fft, base = cfg.istft_params["n_fft"], cfg.base_channels
        self.n_fft, self.hop = n_fft, cfg.istft_params["hop_len"]
        self.m_source = SineSource(cfg)
        self.conv_pre = weight_norm(nn.Conv1d(cfg.in_channels, base, 7, 1, padding=3))
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(base // 2**i, base // 2**(i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)))
        # The source enters each scale through a strided conv matching that scale's rate.
        rates = np.cumprod([1] + cfg.upsample_rates[::-1][:-1])[::-1]
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (u, k, d) in enumerate(zip(rates, cfg.source_resblock_kernel_sizes, cfg.source_resblock_dilation_sizes)):
            ch = base // 2**(i + 1)
            u = int(u)
            self.source_downs.append(nn.Conv1d(n_fft + 2, ch, 1, 1) if u == 1
                                     else nn.Conv1d(n_fft + 2, ch, u * 2, u, padding=u // 2))
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList(
            ResBlock(base // 2**(i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
        self.conv_post = weight_norm(nn.Conv1d(base // 2**len(self.ups), n_fft + 2, 7, 1, padding=3))
        self.f0_predictor = ConvRNNF0Predictor(cfg.in_channels, cfg.f0_cond_channels, cfg.f0_num_layers)
        window = torch.from_numpy(np.hanning(n_fft + 1)[:-1].astype(np.float32))  # periodic Hann
        self.register_buffer("stft_window", window, persistent=False)
        self.decode_dtype = torch.float32

    def _decode_parts(self) -> list[nn.Module]:
        return [self.conv_pre, self.ups, self.source_downs, self.source_resblocks, self.resblocks, self.conv_post]

    def set_decode_dtype(self, dtype: torch.dtype) -> None:
        """The dtype of the conv stack (see the module doc); F0, source and STFTs stay fp32."""
        for part in self._decode_parts():
            part.to(dtype)
        self.decode_dtype = dtype

    def fold_weight_norm(self) -> None:
        """Bake weight-norm parametrizations into plain weights (same values, no per-call recompute)."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, self.n_fft, self.hop, self.n_fft, window=self.stft_window, return_complex=True)
        spec = torch.view_as_real(spec)
        return torch.cat([spec[..., 0], spec[..., 1]], dim=1)  # (B, 2*(n_fft/2+1), frames)

    def _istft(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        magnitude = torch.clip(magnitude, max=MAX_MAGNITUDE)
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return torch.istft(spec, self.n_fft, self.hop, self.n_fft, window=self.stft_window)

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """mel (B, 80, T), source (B, 1, T*480) -> waveform (B, T*480)."""
        s = self._stft(source.squeeze(1)).to(self.decode_dtype)
        x = self.conv_pre(mel.to(self.decode_dtype))
        n_kernels = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s))
            xs = self.resblocks[i * n_kernels](x)
            for j in range(1, n_kernels):
                xs = xs + self.resblocks[i * n_kernels + j](x)
            x = xs / n_kernels
        x = self.conv_post(F.leaky_relu(x, POST_LRELU_SLOPE)).float()
        half = self.n_fft // 2 + 1
        wav = self._istft(torch.exp(x[:, :half]), torch.sin(x[:, half:]))
        return torch.clamp(wav, -self.cfg.audio_limit, self.cfg.audio_limit)

    def forward(self, mel: torch.Tensor, cache_source: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, 80, T) -> waveform (B, T*480) and the source (B, 1, T*480).
        `cache_source` replaces the start of the source (the overlap with the previous chunk)."""
        f0 = self.f0_predictor(mel)
        f0 = f0.repeat_interleave(self.m_source.upsample, dim=1).unsqueeze(-1)  # (B, L, 1)
        source = self.m_source(f0, generator).transpose(1, 2)  # (B, 1, L)
        if cache_source is not None and cache_source.shape[2] > 0:
            source[:, :, :cache_source.shape[2]] = cache_source
        return self.decode(mel, source), source

