"""How far a token2wav setting (precision, step count, compile) moves the output from the
fp32, 10-step reference on the same codes and voice.

The tolerances below come from the measured table in the README (bench/token2wav.py
--quality, real-size random weights, 6 s prompt, 4 s of speech, fp32 10 steps as the
reference): a setting may move the mel no further than dropping from 10 to 4 Euler steps
does in fp32 (mel mean |diff| 0.051, max 0.27, SNR 49.8 dB there). bf16 at 10 steps measured
0.018 / 0.11 and 45.5 dB (58.5 dB with an fp32 vocoder: the vocoder's bf16 convs add rounding
noise 45 dB down, hence the SNR floor of 40 dB rather than 49.8); torch.compile in fp32 only
reorders float sums (~1e-6). They are about agreement with fp32, not absolute audio quality.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# bf16 (flow) vs fp32 at the same step count: what the tests hold bf16 and compiled runs to.
MEL_MEAN_TOL = 0.05  # mean |diff| of the log-mel (random-weight mels have std ~1.2)
MEL_MAX_TOL = 0.3  # the largest single-bin difference
MIN_SNR_DB = 40.0  # waveform SNR against the fp32 waveform (10 dB below the 4-step figure: margin)


@dataclass(frozen=True)
class Agreement:
    mel_mean: float
    mel_max: float
    snr_db: float

    def within(self, mel_mean: float = MEL_MEAN_TOL, mel_max: float = MEL_MAX_TOL,
               snr_db: float = MIN_SNR_DB) -> bool:
        return self.mel_mean <= mel_mean and self.mel_max <= mel_max and self.snr_db >= snr_db

    def as_dict(self) -> dict:
        return asdict(self)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - test|^2); inf when identical."""
    reference = np.asarray(reference, np.float64).reshape(-1)
    test = np.asarray(test, np.float64).reshape(-1)
    if reference.shape != test.shape:
        raise ValueError(f"waveforms differ in length: {reference.size} vs {test.size}")
    noise = float(np.sum((reference - test) ** 2))
    signal = float(np.sum(reference ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def agreement(ref_mel: np.ndarray, ref_wav: np.ndarray, mel: np.ndarray, wav: np.ndarray) -> Agreement:
    """Mel mean / max |diff| and waveform SNR of (mel, wav) against the reference pair."""
    diff = np.abs(np.asarray(mel, np.float64) - np.asarray(ref_mel, np.float64))
    return Agreement(float(diff.mean()), float(diff.max()), snr_db(ref_wav, wav))
