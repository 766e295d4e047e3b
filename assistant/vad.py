"""Silero VAD (the ONNX model shipped inside the `silero-vad` wheel) run with onnxruntime.

One `SileroVAD` holds the model and the recurrent state of ONE audio stream:
feed it consecutive 512-sample frames of 16 kHz audio and it answers the
probability that each frame is speech. The model also expects the last 64
samples of the previous frame in front of each frame (its "context").
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from stepvoice.engine.errors import AudioError, ConfigError

SAMPLE_RATE = 16000
FRAME = 512  # samples per frame at 16 kHz (32 ms): the only size the 16 kHz model takes
CONTEXT = 64  # samples of the previous frame the model sees before each frame
STATE_SHAPE = (2, 1, 128)


def default_model_path() -> Path:
    """`silero_vad/data/silero_vad.onnx` inside the installed wheel."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the silero-vad package is not installed (pip install silero-vad)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ConfigError(f"silero-vad is installed but its model is missing: {path}")
    return path


_SESSIONS: dict[tuple[str, int, int, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _shared_session(path: Path, threads: int) -> Any:
    """One loaded model per file for the whole process: every stream (each server connection, the
    voice loop) passes its own recurrent state to `run`, which onnxruntime allows from many threads
    at once, so building a session per stream (30-130 ms of CPU each) buys nothing."""
    st = path.stat()  # a file rewritten in place is a new model
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, threads)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _SESSIONS[key] = _load_session(path, threads)
        return session


def _load_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # one frame is tiny; more threads only add overhead
    opts.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ConfigError(f"cannot load VAD model {path}: {e}") from None
    names = {i.name for i in session.get_inputs()}
    if names != {"input", "state", "sr"}:
        raise ConfigError(f"{path} is not a Silero VAD v5 model (inputs {sorted(names)})")
    return session


class SileroVAD:
    """Speech probability per 32 ms frame for one stream (state kept between calls)."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1):
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise ConfigError(f"VAD model not found: {path}")
        self._session = _shared_session(path, threads)
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (call between unrelated streams)."""
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> float:
        """Speech probability (0..1) of the next `FRAME` samples of the stream."""
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if frame.shape[0] != FRAME:
            raise AudioError(f"the VAD takes frames of {FRAME} samples at 16 kHz, got {frame.shape[0]}")
        x = np.concatenate([self._context, frame])[None, :]
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = frame[-CONTEXT:].copy()
        return float(out[0, 0])

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of every whole frame of `samples` (a trailing partial frame is ignored)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        n = len(samples) // FRAME
        return np.array([self(samples[i * FRAME:(i + 1) * FRAME]) for i in range(n)], dtype=np.float32)
