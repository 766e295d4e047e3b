"""One utterance streamed to speech: codes in as they come, 24 kHz PCM out per chunk.

Chunking follows the official streaming: each flow call takes `chunk` new
codes plus `pre_lookahead_len` (3) look-ahead codes, which the next call
takes again as its first codes; the first call may take fewer codes
(`first_chunk`) for a faster start; `finish()` decodes what is left with a
zero look-ahead. The vocoder re-runs the last 8 mel frames of the previous
chunk (160 ms), reuses their source excitation, and cross-fades the overlap
with a Hamming window; the last 160 ms of each chunk are held back until the
next chunk (or `finish()`) has produced their cross-fade.

The estimator's attention cache is bounded like the official one: when it
exceeds prompt + 100 frames it keeps `prompt` frames at its newest end and
100 at its oldest (the official code keeps those slices of its cache, whose
newest frames come first). All state lives in this object, so any number of
streams can run side by side; they share only the read-only model weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.token2wav.codes import check_codes
from stepvoice.engine.token2wav.flow import FlowCache

if TYPE_CHECKING:
    from stepvoice.engine.token2wav.token2wav import Token2Wav

MEL_OVERLAP = 8  # mel frames the vocoder re-runs per chunk (160 ms)
CACHE_TAIL_FRAMES = 100  # estimator frames kept beyond the prompt's count
MIN_CHUNK = 4  # codes: a first chunk must yield at least the overlap's 160 ms


@dataclass(frozen=True)
class VoiceTensors:
    """A voice prompt on the model's device."""

    codes: torch.Tensor  # (1, P) long
    speaker: torch.Tensor  # (1, 192)
    mel: torch.Tensor  # (1, 2P, 80)


class Stream:
    def __init__(self, t2w: "Token2Wav", voice: VoiceTensors, start: FlowCache, *, first_chunk: int,
                 chunk: int, n_timesteps: int, seed: int):
        if first_chunk < MIN_CHUNK or chunk < MIN_CHUNK:
            raise StepvoiceError(f"stream chunk sizes must be at least {MIN_CHUNK} codes")
        self._flow, self._hift = t2w.flow, t2w.hift
        self._device, self._dtype = t2w.device, t2w.dtype
        self._voice = voice
        self._cache = start
        self._lookahead = t2w.flow.pre_lookahead_len
        self._next_size = first_chunk
        self._chunk = chunk
        self._n_timesteps = n_timesteps
        self._prompt_frames = voice.mel.shape[1]
        self._source_overlap = MEL_OVERLAP * t2w.samples_per_frame
        self._window = torch.from_numpy(np.hamming(2 * self._source_overlap)).to(self._device)  # float64
        self._generator = torch.Generator(device=self._device).manual_seed(seed)
        self._pending: list[int] = []
        self._mel_tail: torch.Tensor | None = None
        self._source_tail: torch.Tensor | None = None
        self._speech_tail: torch.Tensor | None = None
        self._finished = False
        self.codes_in = 0
        self.samples_out = 0

    @property
    def finished(self) -> bool:
        return self._finished

    def push(self, codes: Iterable[int]) -> np.ndarray:
        """Add codes; returns the 24 kHz float32 audio that became final (may be empty)."""
        if self._finished:
            raise StepvoiceError("this speech stream is finished; start a new one")
        self._pending += check_codes(codes, allow_empty=True)
        out = []
        while len(self._pending) >= self._next_size + self._lookahead:
            out.append(self._run(self._pending[: self._next_size + self._lookahead], last=False))
            self._pending = self._pending[self._next_size:]
            self._next_size = self._chunk
        return self._emit(out)

    def finish(self) -> np.ndarray:
        """Decode the remaining codes; returns the rest of the audio. The stream is then closed."""
        if self._finished:
            return np.zeros(0, np.float32)
        self._finished = True
        out = [self._run(self._pending, last=True)] if self._pending else []
        self._pending = []
        return self._emit(out)

    def _emit(self, parts: list[np.ndarray]) -> np.ndarray:
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        self.samples_out += audio.size
        return audio

    @torch.inference_mode()
    def _run(self, codes: list[int], last: bool) -> np.ndarray:
        self.codes_in += len(codes) if last else len(codes) - self._lookahead
        tokens = torch.tensor([codes], dtype=torch.long, device=self._device)
        mel, cache = self._flow.inference_chunk(tokens, self._voice.speaker, self._cache, last, self._n_timesteps)
        self._cache = cache.trimmed(self._prompt_frames, CACHE_TAIL_FRAMES)
        mel = mel.float()
        if self._mel_tail is not None:
            mel = torch.cat([self._mel_tail, mel], dim=2)
        speech, source = self._hift(mel, self._source_tail, generator=self._generator)
        n = self._source_overlap
        if self._speech_tail is not None:
            faded = speech[:, :n] * self._window[:n] + self._speech_tail[:, -n:] * self._window[n:]
            speech = torch.cat([faded.to(speech.dtype), speech[:, n:]], dim=1)
        self._mel_tail = mel[..., -MEL_OVERLAP:]
        self._source_tail = source[:, :, -n:]
        self._speech_tail = speech[:, -n:]
        if not last:
            speech = speech[:, :-n]
        return speech[0].cpu().numpy().astype(np.float32, copy=False)
