"""The flow: speech codes + voice prompt -> 80-band 50 Hz mel (CausalMaskedDiffWithXvec).

token embedding -> upsampling Conformer encoder -> encoder_proj (= mu) ->
flow matching conditioned on mu, the projected speaker vector and the prompt
mel. Parameter names equal the checkpoint keys of `flow.pt`.

`inference` decodes a whole utterance (prompt codes + codes at once);
`setup_cache` + `inference_chunk` stream it, chunk by chunk, with all state
in a `FlowCache` that the caller owns.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stepvoice.engine.token2wav.cfm import CausalConditionalCFM
from stepvoice.engine.token2wav.config import FlowConfig
from stepvoice.engine.token2wav.dit import DiTCache
from stepvoice.engine.token2wav.flow_encoder import EncoderCache, UpsampleConformerEncoder


@dataclass(frozen=True)
class FlowCache:
    """Streaming state of one utterance: the encoder's and, per Euler step, the estimator's."""

    encoder: EncoderCache
    estimator: tuple[DiTCache, ...]

    @property
    def mel_frames(self) -> int:
        return self.estimator[0].frames

    def trimmed(self, first: int, last: int) -> "FlowCache":
        """Bound the estimator's attention span (see `Stream`)."""
        if self.mel_frames <= first + last:
            return self
        return FlowCache(self.encoder, tuple(c.keep(first, last) for c in self.estimator))


class CausalMaskedDiffWithXvec(nn.Module):
    def __init__(self, cfg: FlowConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.input_embedding = nn.Embedding(cfg.vocab_size, cfg.input_size)
        self.spk_embed_affine_layer = nn.Linear(cfg.spk_embed_dim, cfg.output_size)
        self.encoder = UpsampleConformerEncoder(cfg.encoder)
        self.encoder_proj = nn.Linear(cfg.encoder.output_size, cfg.output_size)
        self.decoder = CausalConditionalCFM(cfg.decoder, cfg.noise_frames, seed)

    @property
    def up_rate(self) -> int:
        return self.cfg.up_rate

    @property
    def pre_lookahead_len(self) -> int:
        return self.cfg.encoder.pre_lookahead_len

    def project_speaker(self, speaker: torch.Tensor) -> torch.Tensor:
        """(1, 192) speaker vector -> (1, 80): L2-normalised, then projected."""
        return self.spk_embed_affine_layer(F.normalize(speaker, dim=1))

    def inference(self, codes: torch.Tensor, prompt_codes: torch.Tensor, prompt_mel: torch.Tensor,
                  speaker: torch.Tensor, n_timesteps: int) -> torch.Tensor:
        """codes (1, N), prompt_codes (1, P), prompt_mel (1, up_rate*P, 80), speaker (1, 192)
        -> the mel of `codes` only: (1, 80, up_rate*N)."""
        spks = self.project_speaker(speaker)
        tokens = torch.cat([prompt_codes, codes], dim=1).clamp(min=0)
        h = self.encoder_proj(self.encoder(self.input_embedding(tokens)))
        n_prompt = prompt_mel.shape[1]
        cond = torch.zeros_like(h)
        cond[:, :n_prompt] = prompt_mel
        mel = self.decoder(h.transpose(1, 2).contiguous(), spks, cond.transpose(1, 2).contiguous(), n_timesteps)
        return mel[:, :, n_prompt:]

    def setup_cache(self, prompt_codes: torch.Tensor, prompt_mel: torch.Tensor, speaker: torch.Tensor,
                    n_timesteps: int) -> FlowCache:
        """Run the prompt through encoder and estimator to start a stream.
        prompt_codes (1, P + pre_lookahead_len): the prompt plus stand-in look-ahead codes."""
        spks = self.project_speaker(speaker)
        h, enc_cache = self.encoder.forward_chunk(self.input_embedding(prompt_codes), None, last_chunk=False)
        h = self.encoder_proj(h)
        _, est_caches = self.decoder.forward_chunk(h.transpose(1, 2).contiguous(), spks,
                                                   prompt_mel.transpose(1, 2).contiguous(), n_timesteps, None)
        return FlowCache(enc_cache, tuple(est_caches))

    def inference_chunk(self, codes: torch.Tensor, speaker: torch.Tensor, cache: FlowCache, last_chunk: bool,
                        n_timesteps: int) -> tuple[torch.Tensor, FlowCache]:
        """codes (1, n + pre_lookahead_len) (look-ahead included unless `last_chunk`)
        -> mel (1, 80, up_rate*n) and the new cache."""
        spks = self.project_speaker(speaker)
        h, enc_cache = self.encoder.forward_chunk(self.input_embedding(codes), cache.encoder, last_chunk)
        h = self.encoder_proj(h).transpose(1, 2).contiguous()
        mel, est_caches = self.decoder.forward_chunk(h, spks, torch.zeros_like(h), n_timesteps,
                                                     list(cache.estimator))
        return mel, FlowCache(enc_cache, tuple(est_caches))
