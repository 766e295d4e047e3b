"""Speaker embedders: 16 kHz speech -> a unit vector that is close for clips of one voice.

- `CampPlusEmbedder`: the checkpoint's `token2wav/campplus.onnx` (192-d), the
  vector token2wav itself conditions on. Used whenever a checkpoint is there.
- `DVectorEmbedder` (default without a checkpoint): the GE2E d-vector
  speaker encoder whose weights ship in the `resemblyzer` wheel
  (`pretrained.pt`, 3-layer LSTM over 40 mel bands -> 256-d). Only its
  weights file is read: resemblyzer's own code needs librosa (~380 MB), so
  the mel front end, the silence trimming (on the small webrtcvad wheel) and
  the partial-window averaging are written here with numpy + torch; the
  tests hold them to resemblyzer's own pipeline (cosine >= 0.99). It is a trained speaker model, unlike a
  spectral-statistics embedding, so it generalises past the test voices.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from stepvoice.engine.errors import AudioError, ConfigError
from stepvoice.retrieval.text_embedder import normalise

SAMPLE_RATE = 16000


@runtime_checkable
class SpeakerEmbedder(Protocol):
    name: str
    dim: int

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz float32 mono -> (dim,) unit vector."""
        ...


def _check_speech(samples: np.ndarray, min_s: float) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    if len(x) < min_s * SAMPLE_RATE:
        raise AudioError(f"audio is {len(x) / SAMPLE_RATE:.2f} s long; a voice needs at least {min_s} s")
    if np.abs(x).max() < 1e-4:
        raise AudioError("audio is silent")
    return x


class DVectorEmbedder:
    """GE2E d-vector from resemblyzer's shipped weights; see module doc."""

    name = "dvector-ge2e"
    dim = 256
    n_fft = 400  # 25 ms window
    hop = 160  # 10 ms
    n_mels = 40
    partial_frames = 160  # 1.6 s per partial window
    partials_per_s = 1.3
    target_dbfs = -30.0  # loudness the encoder was trained at

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        import torch

        from stepvoice.engine.mel import mel_filters  # (engine.mel imports torch: keep it out of `import retrieval`)

        path = Path(weights) if weights else _resemblyzer_weights()
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("model_state", state)
        self._torch = torch
        self.device = device
        self.lstm = torch.nn.LSTM(self.n_mels, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, self.dim)
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.to(device).eval()
        self.linear.to(device).eval()
        self._mel = mel_filters(SAMPLE_RATE, self.n_fft, self.n_mels)  # librosa's slaney default, as trained
        self._window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann

    def mel_frames(self, x: np.ndarray) -> np.ndarray:
        """Power mel spectrogram, not log (what the encoder was trained on): [frames, 40]."""
        pad = self.n_fft // 2
        x = np.pad(x, (pad, pad))
        n = 1 + (len(x) - self.n_fft) // self.hop
        frames = np.lib.stride_tricks.as_strided(x, (n, self.n_fft), (x.strides[0] * self.hop, x.strides[0]))
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        return (power @ self._mel.T).astype(np.float32)

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """Raise quiet clips to the training loudness and cut silences longer than
        ~0.2 s, deciding speech per 30 ms window as the encoder's training data was
        cut (WebRTC VAD, aggressiveness 3, smoothed over 8 windows, pauses of up to
        6 windows kept)."""
        rms_db = 10 * np.log10(np.mean(x**2) + 1e-12)
        if rms_db < self.target_dbfs:
            x = x * 10 ** ((self.target_dbfs - rms_db) / 20)
        win = SAMPLE_RATE * 30 // 1000
        n = len(x) // win
        if n == 0:
            return x
        keep = self._speech_windows(x[: n * win].reshape(n, win))
        trimmed = x[: n * win].reshape(n, win)[keep].reshape(-1)
        return trimmed if len(trimmed) >= SAMPLE_RATE // 2 else x

    @staticmethod
    def _speech_windows(windows: np.ndarray) -> np.ndarray:
        import webrtcvad

        vad = webrtcvad.Vad(3)
        pcm = np.round(np.clip(windows, -1.0, 1.0) * 32767).astype("<i2")
        flags = np.array([vad.is_speech(w.tobytes(), SAMPLE_RATE) for w in pcm], dtype=np.float64)
        # majority over 8 windows (3 before, 4 after; an exact tie counts as silence) ...
        smooth = np.convolve(np.pad(flags, (3, 4)), np.ones(8), mode="valid") / 8
        voiced = smooth > 0.5
        # ... then a window is kept when a voiced one is within 3 windows either side
        return np.convolve(voiced.astype(np.float64), np.ones(7), mode="same") > 0

    def embed(self, samples: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = self.preprocess(_check_speech(samples, 0.3))
        step = int(round(SAMPLE_RATE / self.partials_per_s / self.hop))
        n_frames = int(np.ceil((len(x) + 1) / self.hop))
        starts = list(range(0, max(1, n_frames - self.partial_frames + step + 1), step))
        # drop a last window mostly made of padding (unless it is the only one)
        last_cov = (len(x) - starts[-1] * self.hop) / (self.partial_frames * self.hop)
        if last_cov < 0.75 and len(starts) > 1:
            starts = starts[:-1]
        need = (starts[-1] + self.partial_frames) * self.hop
        if need > len(x):
            x = np.pad(x, (0, need - len(x)))
        mel = self.mel_frames(x)
        batch = np.stack([mel[s : s + self.partial_frames] for s in starts])  # (P, 160, 40)
        with torch.inference_mode():
            _, (hidden, _) = self.lstm(torch.from_numpy(batch).to(self.device))
            partial = torch.relu(self.linear(hidden[-1]))  # (P, 256)
            partial = partial / partial.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return normalise(partial.mean(0).cpu().numpy()[None])[0]


def _resemblyzer_weights() -> Path:
    spec = importlib.util.find_spec("resemblyzer")  # locate only: importing it would need librosa
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "no speaker encoder: install the resemblyzer wheel (`pip install --no-deps resemblyzer`) "
            "or pass a checkpoint with token2wav/campplus.onnx"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise ConfigError(f"resemblyzer is installed but its weights are missing: {path}")
    return path


# ----- CAM++ (token2wav's campplus.onnx) ------------------------------------------------
class CampPlusEmbedder:
    """token2wav's campplus.onnx on token2wav's own features (80-bin kaldi fbank, mean-normalised) -> 192-d."""

    name = "campplus"

    def __init__(self, onnx_path: str | Path) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ConfigError(f"speaker model not found: {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def embed(self, samples: np.ndarray) -> np.ndarray:
        from stepvoice.engine.token2wav.features import speaker_fbank  # the recipe token2wav itself uses

        feats = speaker_fbank(_check_speech(samples, 0.3))
        out = self._session.run(None, {self._input: feats[None]})[0]
        return normalise(np.asarray(out, dtype=np.float32).reshape(1, -1))[0]


def load_speaker_embedder(spec: "str | SpeakerEmbedder | None" = None, *, checkpoint: str | Path | None = None) -> SpeakerEmbedder:
    """None: campplus from `checkpoint`/token2wav when present, else the d-vector.

    Specs: "dvector", "campplus" (needs `checkpoint`), or a path to a campplus-style .onnx file.
    """
    if spec is not None and not isinstance(spec, str):
        return spec
    campplus = Path(checkpoint) / "token2wav" / "campplus.onnx" if checkpoint else None
    if spec in (None, "", "auto"):
        return CampPlusEmbedder(campplus) if campplus and campplus.is_file() else DVectorEmbedder()
    if spec in ("dvector", DVectorEmbedder.name):
        return DVectorEmbedder()
    if spec == "campplus":
        if campplus is None:
            raise ConfigError("speaker embedder 'campplus' needs a checkpoint folder (token2wav/campplus.onnx)")
        return CampPlusEmbedder(campplus)
    if spec.endswith(".onnx"):
        return CampPlusEmbedder(spec)
    raise ConfigError(f"unknown speaker embedder {spec!r} (use dvector, campplus or a .onnx path)")
