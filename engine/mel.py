"""The official Step-Audio 2 input features: a 128-band Whisper-style log-mel.

Recipe (reference §2): right-pad 479 samples; STFT n_fft 400, hop 160,
Hann(400), centered with reflect padding; drop the last frame; power;
slaney mel filterbank (computed here, equal to librosa's / Whisper's);
log10(clamp 1e-10); floor at max - 8; (x + 4) / 4.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 128
RIGHT_PAD = 479  # the official recipe's extra right padding before the STFT
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below the maximum


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank [n_mels, n_fft // 2 + 1] (float32),
    as librosa.filters.mel(sr, n_fft, n_mels) with its defaults (htk=False, norm="slaney")."""
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]  # slaney area normalisation
    return weights.astype(np.float32)


@lru_cache(maxsize=4)
def _filters_tensor(n_mels: int) -> torch.Tensor:
    return torch.from_numpy(mel_filters(SAMPLE_RATE, N_FFT, n_mels))


def log_mel(samples: np.ndarray | torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel features [n_mels, T] (float32, CPU) of one piece of 16 kHz mono audio."""
    audio = torch.as_tensor(np.asarray(samples, dtype=np.float32) if not torch.is_tensor(samples) else samples)
    audio = audio.to(torch.float32).reshape(-1)
    audio = torch.nn.functional.pad(audio, (0, RIGHT_PAD))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec[..., :-1].abs() ** 2  # [n_fft//2+1, T]; the last frame is dropped as in the recipe
    mel = _filters_tensor(n_mels) @ power
    logs = torch.clamp(mel, min=LOG_FLOOR).log10()
    logs = torch.maximum(logs, logs.max() - DYNAMIC_RANGE)
    return (logs + 4.0) / 4.0


def mel_frames(n_samples: int) -> int:
    """Frames `log_mel` returns for `n_samples` samples."""
    return (n_samples + RIGHT_PAD) // HOP


def placeholder_count(mel_frames: int, kernel_size: int = 3, stride: int = 2) -> int:
    """`<audio_patch>` slots for a piece with `mel_frames` frames: the encoder sees
    T - 2 frames, halves them twice (conv stride 2, average pool), then the adapter
    conv (`kernel_size`, `stride`, padding 1) shortens again: (e - 1) // 2 + 1 for
    the real config."""
    encoded = (mel_frames - 2 + 1) // 2 // 2
    return (encoded + 2 * 1 - kernel_size) // stride + 1
