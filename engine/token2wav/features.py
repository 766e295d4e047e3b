"""Features of a reference voice clip (reference §5).

- `tokenizer_log_mel`: the S3Tokenizer input, 128-band Whisper-style log-mel
  of 16 kHz audio (as `engine.mel.log_mel` but without its extra right pad).
- `speaker_fbank`: 80-bin Kaldi fbank (dither 0), minus its mean over time,
  the campplus input.
- `prompt_mel`: the flow's 80-band 24 kHz mel (n_fft 1920, hop 480, fmax
  8 kHz, reflect-padded, magnitude, natural log), 50 frames per second.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from stepvoice.engine.mel import mel_filters

# S3Tokenizer features (16 kHz)
TOKENIZER_SR = 16000
TOKENIZER_N_FFT = 400
TOKENIZER_HOP = 160
TOKENIZER_MELS = 128
LOG10_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0

# campplus features (16 kHz)
FBANK_BINS = 80

# flow prompt mel (24 kHz)
PROMPT_SR = 24000
PROMPT_N_FFT = 1920
PROMPT_HOP = 480
PROMPT_MELS = 80
PROMPT_FMIN = 0.0
PROMPT_FMAX = 8000.0
MAGNITUDE_EPS = 1e-9
LOG_FLOOR = 1e-5


@lru_cache(maxsize=4)
def _filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    return torch.from_numpy(mel_filters(sr, n_fft, n_mels, fmin=fmin, fmax=fmax))


def tokenizer_log_mel(samples: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 -> [128, T] float32, T = len // 160."""
    audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    window = torch.hann_window(TOKENIZER_N_FFT)
    spec = torch.stft(audio, TOKENIZER_N_FFT, TOKENIZER_HOP, window=window, return_complex=True)
    power = spec[..., :-1].abs() ** 2
    mel = _filters(TOKENIZER_SR, TOKENIZER_N_FFT, TOKENIZER_MELS, 0.0, None) @ power
    logs = torch.clamp(mel, min=LOG10_FLOOR).log10()
    logs = torch.maximum(logs, logs.max() - DYNAMIC_RANGE)
    return ((logs + 4.0) / 4.0).numpy()


def speaker_fbank(samples: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 -> [T, 80] Kaldi fbank (25 ms / 10 ms frames, dither 0), mean-normalised."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = TOKENIZER_SR
    opts.mel_opts.num_bins = FBANK_BINS
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(TOKENIZER_SR, np.ascontiguousarray(samples, dtype=np.float32))
    fbank.input_finished()
    frames = np.stack([np.asarray(fbank.get_frame(i), dtype=np.float32) for i in range(fbank.num_frames_ready)]) \
        if fbank.num_frames_ready else np.zeros((0, FBANK_BINS), np.float32)
    return frames - frames.mean(axis=0, keepdims=True)


def prompt_mel(samples24k: np.ndarray) -> np.ndarray:
    """24 kHz mono float32 -> [T, 80] log-mel, T = len // 480."""
    audio = torch.from_numpy(np.ascontiguousarray(samples24k, dtype=np.float32))
    pad = (PROMPT_N_FFT - PROMPT_HOP) // 2
    audio = torch.nn.functional.pad(audio[None, None], (pad, pad), mode="reflect")[0, 0]
    window = torch.hann_window(PROMPT_N_FFT)
    spec = torch.stft(audio, PROMPT_N_FFT, PROMPT_HOP, PROMPT_N_FFT, window=window, center=False,
                      return_complex=True)
    spec = torch.view_as_real(spec)
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + MAGNITUDE_EPS)
    mel = _filters(PROMPT_SR, PROMPT_N_FFT, PROMPT_MELS, PROMPT_FMIN, PROMPT_FMAX) @ magnitude
    return torch.log(torch.clamp(mel, min=LOG_FLOOR)).T.contiguous().numpy()


def fit_frames(mel: np.ndarray, frames: int) -> np.ndarray:
    """Cut or extend (repeating the last frame) a [T, C] mel to exactly `frames` rows."""
    if mel.shape[0] >= frames:
        return mel[:frames]
    return np.concatenate([mel, np.repeat(mel[-1:], frames - mel.shape[0], axis=0)], axis=0)
