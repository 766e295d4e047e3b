"""Causal conditional flow matching: Euler steps of the DiT velocity with classifier-free guidance.

The start noise is fixed: one (1, 80, noise_frames) tensor drawn once from a
seeded CPU generator; frame i of any utterance always starts from column i
(streaming chunks start at the column of their first frame in the cache).
Time runs on the cosine schedule t = 1 - cos(s * pi / 2), s = 0..1.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.token2wav.config import CFMConfig
from stepvoice.engine.token2wav.dit import Conditioning, DiT, DiTCache


def draw_noise(channels: int, frames: int, seed: int) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(1, channels, frames, generator=generator, device="cpu")


class CausalConditionalCFM(nn.Module):
    def __init__(self, cfg: CFMConfig, noise_frames: int, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.inference_cfg_rate = cfg.inference_cfg_rate
        self.estimator = DiT(cfg.estimator)
        # Not a checkpoint tensor: drawn from `seed` so that runs repeat.
        self.register_buffer("rand_noise", draw_noise(cfg.estimator.out_channels, noise_frames, seed),
                             persistent=False)

    def _noise(self, offset: int, frames: int) -> torch.Tensor:
        if offset + frames > self.rand_noise.shape[2]:
            seconds = self.rand_noise.shape[2] // 50
            raise StepvoiceError(f"speech too long for token2wav: more than {seconds} s in one utterance")
        return self.rand_noise[:, :, offset:offset + frames]

    @staticmethod
    def time_span(n_timesteps: int, like: torch.Tensor) -> torch.Tensor:
        s = torch.linspace(0, 1, n_timesteps + 1, device=like.device, dtype=like.dtype)
        return 1 - torch.cos(s * 0.5 * math.pi)

    @staticmethod
    def step_times(t_span: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The times and step sizes the Euler loop visits, accumulated exactly as the reference
        does (t += dt; dt = t_span[i + 1] - t), so the same floats reach the estimator."""
        t, dt = t_span[0].unsqueeze(0), t_span[1] - t_span[0]
        times, dts = [t], [dt]
        for step in range(1, t_span.shape[0] - 1):
            t = t + dt
            dt = t_span[step + 1] - t
            times.append(t)
            dts.append(dt)
        return torch.cat(times), dts

    def _solve(self, x: torch.Tensor, mu: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor,
               n_timesteps: int, caches: list[DiTCache] | None,
               keep_cache: bool) -> tuple[torch.Tensor, list[DiTCache | None]]:
        """Euler integration; guidance runs the unconditioned half (mu, speaker, cond = 0) in the same batch.

        What does not change across steps is computed once: the estimator's projection of mu,
        speaker and cond (the unconditioned half's is its bias alone) and every step's adaLN
        modulation (a function of t only)."""
        times, dts = self.step_times(self.time_span(n_timesteps, mu))
        estimator = self.estimator
        conditioned = estimator.condition(mu, spks, cond)
        unconditioned = estimator.in_proj.bias.expand_as(conditioned.h)
        fixed = Conditioning(conditioned.w_x, torch.cat([conditioned.h, unconditioned], dim=0))
        mods = estimator.step_modulations(times)
        rate = self.inference_cfg_rate
        new_caches: list[DiTCache] = []
        for step in range(n_timesteps):
            cache = caches[step] if caches is not None else None
            v, new_cache = estimator.velocity(x.repeat(2, 1, 1), fixed, mods[step], cache, keep_cache)
            new_caches.append(new_cache)
            v_cond, v_uncond = v.chunk(2, dim=0)
            x = x + dts[step] * ((1.0 + rate) * v_cond - rate * v_uncond)
        return x, new_caches

    def forward(self, mu: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor, n_timesteps: int) -> torch.Tensor:
        """Whole utterance. mu, cond (1, 80, T); spks (1, 80) -> mel (1, 80, T)."""
        x = self._noise(0, mu.shape[2]).to(mu.dtype)
        x, _ = self._solve(x, mu, spks, cond, n_timesteps, None, keep_cache=False)
        return x

    def forward_chunk(self, mu: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor, n_timesteps: int,
                      caches: list[DiTCache] | None) -> tuple[torch.Tensor, list[DiTCache]]:
        """One chunk after the frames held in `caches` (one cache per Euler step)."""
        if caches is not None and len(caches) != n_timesteps:
            raise StepvoiceError(f"stream cache was built for {len(caches)} steps, not {n_timesteps}")
        offset = caches[0].frames if caches is not None else 0
        x = self._noise(offset, mu.shape[2]).to(mu.dtype)
        return self._solve(x, mu, spks, cond, n_timesteps, caches, keep_cache=True)
