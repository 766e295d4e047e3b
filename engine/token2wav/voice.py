"""Voice prompts: what token2wav needs from a reference clip, computed once and cached.

`VoicePrompt(codes, speaker, mel)`: the clip's speech codes (S3Tokenizer v2,
25 per second), its 192-d campplus speaker vector and its [2 x codes, 80]
24 kHz mel. `VoicePreparer` computes one from a clip with onnxruntime
(`speech_tokenizer_v2_25hz.onnx`, `campplus.onnx`), the way CosyVoice's
front end runs these files; `save`/`load` keep it on disk (the voice bank).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stepvoice.engine.errors import AudioError, CheckpointError
from stepvoice.engine.token2wav import features
from stepvoice.engine.token2wav.config import NUM_CODES

log = logging.getLogger(__name__)

SPEAKER_DIM = 192
MEL_CHANNELS = 80
UP_RATE = 2  # prompt mel frames per prompt code (50 Hz mel / 25 Hz codes)
MIN_SECONDS = 1.0  # shorter clips carry too little timbre (and give < 25 codes)
MAX_SECONDS = 30.0  # the speech tokenizer's limit; longer clips are trimmed
SILENCE_RMS = 1e-4  # below this the clip is taken as silent
TOKENIZER_FILE = "speech_tokenizer_v2_25hz.onnx"
CAMPPLUS_FILE = "campplus.onnx"


@dataclass(frozen=True, eq=False)
class VoicePrompt:
    codes: np.ndarray  # (P,) int64, 0..6560
    speaker: np.ndarray  # (192,) float32
    mel: np.ndarray  # (2P, 80) float32

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes, dtype=np.int64).reshape(-1)
        speaker = np.asarray(self.speaker, dtype=np.float32).reshape(-1)
        mel = np.asarray(self.mel, dtype=np.float32)
        if codes.size == 0 or codes.min() < 0 or codes.max() >= NUM_CODES:
            raise AudioError(f"voice prompt codes must be 1 or more values in 0..{NUM_CODES - 1}")
        if mel.ndim != 2 or mel.shape != (UP_RATE * codes.size, MEL_CHANNELS):
            raise AudioError(f"voice prompt mel has shape {mel.shape}, expected ({UP_RATE * codes.size}, {MEL_CHANNELS})")
        if not (np.isfinite(speaker).all() and np.isfinite(mel).all()):
            raise AudioError("voice prompt holds NaN or infinite values")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "speaker", speaker)
        object.__setattr__(self, "mel", mel)

    @property
    def seconds(self) -> float:
        return self.codes.size / 25.0

    def fingerprint(self) -> bytes:
        """Identifies the prompt's content (for caches keyed by voice)."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for a in (self.codes, self.speaker, self.mel):
            h.update(a.tobytes())
        return h.digest()

    def save(self, path: str | Path) -> None:
        """Write as .npz (written to a temporary name, then renamed)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, codes=self.codes, speaker=self.speaker, mel=self.mel)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "VoicePrompt":
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                return cls(data["codes"], data["speaker"], data["mel"])
        except (OSError, KeyError, ValueError) as exc:
            raise AudioError(f"cannot read voice prompt {path}: {exc}") from None


def _onnx_session(path: Path):
    import onnxruntime as ort

    if not path.is_file():
        raise CheckpointError(f"missing {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load {path.name} (corrupt or not ONNX): {first[:200]}") from None


def read_reference(wav: str | Path | np.ndarray, sr: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A reference clip as (16 kHz first channel, 24 kHz channel mean), trimmed to MAX_SECONDS.

    Arrays are taken as 16 kHz unless `sr` says otherwise."""
    from stepvoice.engine.audio import check_samples, resample

    if isinstance(wav, np.ndarray):
        data, rate, what = np.asarray(wav, dtype=np.float32), int(sr or 16000), "reference audio array"
        if data.ndim == 2:
            data = data if data.shape[0] >= data.shape[1] else data.T  # (samples, channels)
        elif data.ndim == 1:
            data = data[:, None]
        else:
            raise AudioError(f"{what} must be 1-D or 2-D, got shape {data.shape}")
    elif isinstance(wav, (str, Path)):
        import soundfile as sf

        what = f"reference clip {wav}"
        try:
            data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / OSError
            raise AudioError(f"cannot read {what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    else:
        raise AudioError(f"a reference voice must be a path or a numpy array, not {type(wav).__name__}")
    if data.size == 0:
        raise AudioError(f"{what} has no samples")
    seconds = data.shape[0] / rate
    if seconds < MIN_SECONDS:
        raise AudioError(f"{what} is {seconds:.2f} s long; a reference voice needs at least {MIN_SECONDS:g} s of speech")
    if seconds > MAX_SECONDS:
        warnings.warn(f"{what} is {seconds:.1f} s long; using its first {MAX_SECONDS:g} s", stacklevel=3)
        data = data[: int(MAX_SECONDS * rate)]
    first = check_samples(data[:, 0], what)
    if float(np.sqrt(np.mean(first.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise AudioError(f"{what} is silent; a reference voice needs audible speech")
    mean = check_samples(data.mean(axis=1), what)
    return resample(first, rate, 16000), resample(mean, rate, features.PROMPT_SR)


class VoicePreparer:
    """Runs the two ONNX models of a token2wav folder on reference clips."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        self.tokenizer = _onnx_session(directory / TOKENIZER_FILE)
        self.campplus = _onnx_session(directory / CAMPPLUS_FILE)

    def speech_codes(self, samples16k: np.ndarray) -> np.ndarray:
        feats = features.tokenizer_log_mel(samples16k)[None]  # (1, 128, T)
        inputs = self.tokenizer.get_inputs()
        feed = {inputs[0].name: feats, inputs[1].name: np.array([feats.shape[2]], dtype=np.int32)}
        codes = self._run(self.tokenizer, feed, TOKENIZER_FILE).reshape(-1).astype(np.int64)
        if codes.size == 0 or codes.min() < 0 or codes.max() >= NUM_CODES:
            raise CheckpointError(f"{TOKENIZER_FILE} returned codes outside 0..{NUM_CODES - 1}")
        return codes

    def speaker_vector(self, samples16k: np.ndarray) -> np.ndarray:
        fbank = features.speaker_fbank(samples16k)[None]  # (1, T, 80)
        out = self._run(self.campplus, {self.campplus.get_inputs()[0].name: fbank}, CAMPPLUS_FILE)
        vector = out.reshape(-1).astype(np.float32)
        if vector.size != SPEAKER_DIM:
            raise CheckpointError(f"{CAMPPLUS_FILE} returned {vector.size} values, expected {SPEAKER_DIM}")
        return vector

    @staticmethod
    def _run(session, feed: dict, name: str) -> np.ndarray:
        try:
            return np.asarray(session.run(None, feed)[0])
        except Exception as exc:  # a graph that loads but cannot run these inputs
            raise CheckpointError(f"{name} failed on the reference clip: {str(exc).splitlines()[0][:200]}") from None

    def prepare(self, wav: str | Path | np.ndarray, sr: int | None = None) -> VoicePrompt:
        samples16k, samples24k = read_reference(wav, sr)
        codes = self.speech_codes(samples16k)
        speaker = self.speaker_vector(samples16k)
        mel = features.fit_frames(features.prompt_mel(samples24k), UP_RATE * codes.size)
        return VoicePrompt(codes, speaker, mel)
