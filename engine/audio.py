"""Audio input: read anything soundfile reads, first channel, 16 kHz float32.

`load_audio` accepts a path, the bytes of a file, or an array; every failure is
an `AudioError` with one line saying what was wrong. Long audio is cut into
25 s pieces (`split_pieces`), each of which the model hears as its own
`<audio_start>` N x `<audio_patch>` `<audio_end>` block; the features of a
piece come from `engine.mel.log_mel`.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from stepvoice.engine.errors import AudioError
from stepvoice.engine.mel import HOP, RIGHT_PAD, log_mel, mel_filters, mel_frames, placeholder_count

SAMPLE_RATE = 16000
PIECE_SECONDS = 25
PIECE_SAMPLES = SAMPLE_RATE * PIECE_SECONDS
# A piece shorter than this gives no <audio_patch> slot at all (placeholder_count == 0):
# T = (n + 479) // 160 frames must reach 5. Such slivers (the tail of a 25 s cut) are dropped.
MIN_PIECE_SAMPLES = 5 * HOP - RIGHT_PAD


def _describe(src: object) -> str:
    if isinstance(src, (str, Path)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return type(src).__name__


_STDERR_LOCK = threading.Lock()
# What the decoders inside libsndfile (mpg123 above all) print on fd 2 while they
# try a corrupt file: "Note: Illegal Audio-MPEG-Header ...", "Note: Trying to resync...".
_DECODER_NOISE = ("Note:", "Warning:", "[src/libmpg123", "[src/libout123")


@contextlib.contextmanager
def _decoder_stderr_captured() -> Iterator[None]:
    """The C decoders write straight to fd 2, past Python: point fd 2 at a temp file
    while they run and pass on afterwards only what was not theirs."""
    with _STDERR_LOCK:  # one redirection at a time: each must restore the real fd 2
        try:
            saved = os.dup(2)  # the C libraries' stderr, whatever Python's sys.stderr is now
        except OSError:  # fd 2 is closed: nothing can reach a terminal anyway
            yield
            return
        with tempfile.TemporaryFile() as sink:
            sys.stderr.flush()
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                kept = [ln for ln in sink.read().decode(errors="replace").splitlines(keepends=True)
                        if not ln.lstrip().startswith(_DECODER_NOISE)]
                if kept:
                    sys.stderr.write("".join(kept))


def _read(src: str | Path | bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.exists():
            raise AudioError(f"audio file not found: {path}")
        if path.is_dir():
            raise AudioError(f"expected an audio file, got a folder: {path}")
        if path.stat().st_size == 0:
            raise AudioError(f"audio file is empty (0 bytes): {path}")
        handle: object = str(path)
    else:
        data = bytes(src)
        if not data:
            raise AudioError("audio data is empty (0 bytes)")
        handle = io.BytesIO(data)
    try:
        with _decoder_stderr_captured():
            samples, sr = sf.read(handle, dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        low = msg.lower()
        if "unknown format" in low or "format not recognised" in low:
            raise AudioError(f"unsupported or unrecognised audio format: {_describe(src)}") from None
        if "does not exist or is not a regular file" in low or "error in mpeg decoder" in low:
            # libsndfile's catch-all when a decoder gives up (we checked the file exists above)
            raise AudioError(f"not valid audio: {_describe(src)} is corrupt or not in the format its contents "
                             "claim (no decoder could read it)") from None
        raise AudioError(f"cannot read audio {_describe(src)}: {msg}") from None
    except (RuntimeError, ValueError, TypeError) as e:
        raise AudioError(f"cannot read audio {_describe(src)}: {e}") from None
    return samples[:, 0], int(sr)


def _first_channel(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 1:
        return arr
    if arr.ndim != 2:
        raise AudioError(f"audio array must be 1-D or 2-D, got shape {arr.shape}")
    # soundfile's layout is (samples, channels); torch-style (channels, samples) is
    # recognised when the first axis is a handful of channels and the second is long.
    if arr.shape[0] <= 8 < arr.shape[1]:
        return arr[0]
    return arr[:, 0]


def _to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype.kind == "i":
        return (arr.astype(np.float32) / float(2 ** (8 * arr.dtype.itemsize - 1))).astype(np.float32)
    if arr.dtype.kind == "u":  # unsigned PCM is offset binary
        half = float(2 ** (8 * arr.dtype.itemsize - 1))
        return ((arr.astype(np.float32) - half) / half).astype(np.float32)
    if arr.dtype.kind == "b":
        raise AudioError("audio array of booleans is not audio")
    raise AudioError(f"audio array of dtype {arr.dtype} is not supported")


def resample(samples: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float32 audio with soxr (high quality)."""
    if sr == target:
        return samples
    import soxr

    return soxr.resample(samples, sr, target, quality="HQ").astype(np.float32, copy=False)


def check_samples(samples: np.ndarray, what: str = "audio") -> np.ndarray:
    """Validate mono float samples: non-empty, finite. Returns them as contiguous float32."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"{what} must be mono (1-D), got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{what} has no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{what} contains NaN or infinite samples")
    return samples


def load_audio(src: str | Path | bytes | bytearray | np.ndarray, sr: int | None = None) -> np.ndarray:
    """16 kHz mono float32 samples from a file path, file bytes or an array.

    For arrays, `sr` is their sample rate (default 16000); integer PCM is scaled
    to [-1, 1]. Files and bytes carry their own rate (`sr` is then ignored).
    Raises AudioError for missing, empty, corrupt or unsupported input, and for
    NaN/inf samples."""
    if isinstance(src, np.ndarray):
        if src.size == 0:
            raise AudioError("audio array is empty")
        samples, rate = _to_float(_first_channel(src)), int(sr or SAMPLE_RATE)
        what = "audio array"
    elif isinstance(src, (str, Path, bytes, bytearray, memoryview)):
        samples, rate = _read(src)
        what = f"audio {_describe(src)}"
    else:
        raise AudioError(f"cannot read audio from a {type(src).__name__}; give a path, bytes or a numpy array")
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    samples = check_samples(samples, what)
    return check_samples(resample(samples, rate), what)


def split_pieces(samples: np.ndarray, piece_samples: int = PIECE_SAMPLES) -> list[np.ndarray]:
    """Cut audio into consecutive 25 s pieces (the last one shorter). A trailing
    sliver too short to give any <audio_patch> slot is dropped; audio that is
    too short as a whole gives an empty list."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    pieces = [samples[i:i + piece_samples] for i in range(0, len(samples), piece_samples)]
    return [p for p in pieces if len(p) >= MIN_PIECE_SAMPLES]


def piece_placeholders(n_samples: int) -> int:
    """`<audio_patch>` slots of a piece of `n_samples` samples."""
    return placeholder_count(mel_frames(n_samples))


__all__ = [
    "SAMPLE_RATE", "PIECE_SAMPLES", "MIN_PIECE_SAMPLES", "load_audio", "check_samples", "resample",
    "split_pieces", "log_mel", "mel_filters", "mel_frames", "placeholder_count", "piece_placeholders",
]
