"""Test-only: the reference flow and HiFT (`step-audio2`, installed --no-deps) driven like the
official Token2wav class, on CPU, from the same files our code loads.

`reference_offline` mirrors Token2wav.__call__ and `ReferenceStream` mirrors
Token2wav.set_stream_cache + Token2wav.stream (float output instead of int16
bytes), using only the reference modules.
"""
from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from stepvoice.engine.token2wav.config import FlowConfig, load_flow_config
from stepvoice.engine.token2wav.voice import VoicePrompt

# step-audio2's reference modules: installed --no-deps by `scripts/setup.sh --test`.
from cosyvoice2.flow.decoder_dit import DiT  # noqa: E402
from cosyvoice2.flow.flow import CausalMaskedDiffWithXvec  # noqa: E402
from cosyvoice2.flow.flow_matching import CausalConditionalCFM  # noqa: E402
from cosyvoice2.transformer.upsample_encoder_v2 import UpsampleConformerEncoderV2  # noqa: E402
from flashcosyvoice.modules.hifigan import ConvRNNF0Predictor, HiFTGenerator  # noqa: E402

OUR_ONLY_KEYS = ("frequency_embedding_size", "timestep_scale", "conv_kernel_size")
MEL_CACHE_LEN = 8  # official stream constants
SOURCE_CACHE_LEN = MEL_CACHE_LEN * 480
ESTIMATOR_TAIL = 100


def build_reference_flow(cfg: FlowConfig, n_timesteps: int = 10, max_frames: int = 1000) -> CausalMaskedDiffWithXvec:
    """The reference flow for `cfg`, with streaming scratch buffers sized for it (the reference
    hard-codes them for the real size)."""
    dit_args = dataclasses.asdict(cfg.decoder.estimator)
    for key in OUR_ONLY_KEYS:
        dit_args.pop(key)
    est = DiT(**dit_args)
    flow = CausalMaskedDiffWithXvec(
        input_size=cfg.input_size, output_size=cfg.output_size, spk_embed_dim=cfg.spk_embed_dim,
        output_type=cfg.output_type, vocab_size=cfg.vocab_size,
        encoder=UpsampleConformerEncoderV2(**dataclasses.asdict(cfg.encoder)),
        decoder=CausalConditionalCFM(est, inference_cfg_rate=cfg.decoder.inference_cfg_rate))
    d, heads, hd, hid = len(est.blocks), est.blocks[0].attn.num_heads, est.blocks[0].attn.head_dim, cfg.decoder.estimator.hidden_size
    flow.decoder.cnn_cache_buffer = torch.zeros(n_timesteps, d, 2, 2 * hid, 2)
    flow.decoder.att_cache_buffer = torch.zeros(n_timesteps, d, 2, heads, max_frames, 2 * hd)
    est.cnn_cache_buffer = torch.zeros(d, 2, 2 * hid, 2)
    est.att_cache_buffer = torch.zeros(d, 2, heads, max_frames, 2 * hd)
    # forward_chunk is wrapped in torch.compile(backend="eager"): same maths, but seconds of
    # tracing per new shape; run the undecorated function.
    plain = UpsampleConformerEncoderV2.forward_chunk._torchdynamo_orig_callable
    flow.encoder.forward_chunk = types.MethodType(plain, flow.encoder)
    return flow.eval()


def load_reference(folder: Path, noise: torch.Tensor):
    """Reference flow + HiFT loaded from a token2wav folder's flow.yaml / flow.pt / hift.pt;
    `noise` replaces the reference's unseeded flow-matching noise."""
    flow = build_reference_flow(load_flow_config(folder / "flow.yaml"))
    flow.load_state_dict(torch.load(folder / "flow.pt", map_location="cpu", weights_only=True), strict=True)
    flow.decoder.rand_noise.copy_(noise)
    state = {k.replace("generator.", ""): v for k, v in torch.load(folder / "hift.pt", map_location="cpu", weights_only=True).items()}
    base = state["conv_pre.parametrizations.weight.original1"].shape[0]
    cond = state["f0_predictor.condnet.0.parametrizations.weight.original1"].shape[0]
    hift = HiFTGenerator(base_channels=base, f0_predictor=ConvRNNF0Predictor(cond_channels=cond))
    hift.load_state_dict(state, strict=True)
    return flow, hift.eval()


def prompt_tensors(voice: VoicePrompt):
    codes = torch.from_numpy(voice.codes).int().unsqueeze(0)
    return codes, torch.from_numpy(voice.speaker).unsqueeze(0), torch.from_numpy(voice.mel).unsqueeze(0)


def reference_offline(flow, hift, codes: list[int], voice: VoicePrompt, seed: int, n_timesteps: int = 10):
    """(mel [80, T], waveform) as Token2wav.__call__ computes them."""
    pc, spk, pm = prompt_tensors(voice)
    tok = torch.tensor([codes], dtype=torch.int32)
    mel = flow.inference(tok, torch.tensor([tok.shape[1]], dtype=torch.int32), pc,
                         torch.tensor([pc.shape[1]], dtype=torch.int32), pm,
                         torch.tensor([pm.shape[1]], dtype=torch.int32), spk, n_timesteps)
    torch.manual_seed(seed)
    wav, _ = hift(speech_feat=mel)
    return mel[0].numpy(), wav[0].numpy()


def _fade_in_out(fade_in: torch.Tensor, fade_out: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    n = int(window.shape[0] / 2)
    fade_in = fade_in.clone()
    fade_in[..., :n] = fade_in[..., :n] * window[:n] + fade_out[..., -n:] * window[n:]
    return fade_in


class ReferenceStream:
    """Token2wav.set_stream_cache + Token2wav.stream on CPU, returning float chunks."""

    def __init__(self, flow, hift, voice: VoicePrompt, seed: int, n_timesteps: int = 10):
        self.flow, self.hift, self.n = flow, hift, n_timesteps
        self.pc, self.spk, self.pm = prompt_tensors(voice)
        self.cache = flow.setup_cache(torch.cat([self.pc, self.pc[:, :3]], dim=1), self.pm, self.spk,
                                      n_timesteps=n_timesteps)
        self.mel_cache = torch.zeros(1, 80, 0)
        self.source_cache = torch.zeros(1, 1, 0)
        self.speech_cache = torch.zeros(1, 0)
        self.window = torch.from_numpy(np.hamming(2 * SOURCE_CACHE_LEN))
        self.rng_state = torch.Generator().manual_seed(seed).get_state()

    def chunk(self, codes: list[int], last: bool) -> np.ndarray:
        tok = torch.tensor([codes], dtype=torch.int32)
        mel, self.cache = self.flow.inference_chunk(token=tok, spk=self.spk, cache=self.cache,
                                                    last_chunk=last, n_timesteps=self.n)
        att = self.cache["estimator_att_cache"]
        if att.shape[4] > self.pm.shape[1] + ESTIMATOR_TAIL:
            self.cache["estimator_att_cache"] = torch.cat(
                [att[:, :, :, :, :self.pm.shape[1]], att[:, :, :, :, -ESTIMATOR_TAIL:]], dim=4)
        mel = torch.concat([self.mel_cache, mel], dim=2)
        # The reference vocoder draws from the global generator: give it this stream's state.
        saved = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        speech, source = self.hift(mel, self.source_cache)
        self.rng_state = torch.get_rng_state()
        torch.set_rng_state(saved)
        if self.speech_cache.shape[-1] > 0:
            speech = _fade_in_out(speech, self.speech_cache, self.window)
        self.mel_cache = mel[..., -MEL_CACHE_LEN:].clone()
        self.source_cache = source[:, :, -SOURCE_CACHE_LEN:].clone()
        self.speech_cache = speech[:, -SOURCE_CACHE_LEN:].clone()
        if not last:
            speech = speech[:, :-SOURCE_CACHE_LEN]
        return speech[0].numpy()


def chunk_plan(n_codes: int, first: int = 25, chunk: int = 25, lookahead: int = 3) -> list[tuple[int, int, bool]]:
    """(start, end, last) code ranges of the official chunking: `size` codes + look-ahead."""
    plan, start, size = [], 0, first
    while n_codes - start >= size + lookahead:
        plan.append((start, start + size + lookahead, False))
        start, size = start + size, chunk
    if start < n_codes:
        plan.append((start, n_codes, True))
    return plan
