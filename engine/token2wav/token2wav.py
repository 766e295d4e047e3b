"""`Token2Wav`: a checkpoint's token2wav/ folder as one object.

    t2w = Token2Wav.from_dir("Step-Audio-2-mini/token2wav", device="cpu")
    voice = t2w.prepare_voice("reference.wav")        # VoicePrompt, cacheable
    wav = t2w.synthesize(codes, voice)                # float32, 24 kHz
    s = t2w.stream(voice); s.push(codes[:40]); s.finish()

Runs on any torch device (fp32 by default; `dtype` casts the flow only, the
vocoder stays fp32). Outputs are reproducible: the flow's noise comes from
`seed`, and each synthesis / stream draws the vocoder's random phases from
its own generator seeded with `seed`. A stream's start (the prompt run
through encoder and estimator) depends only on the voice, so it is computed
once per voice and shared by later streams (read-only); `warm(voice)` does it
ahead of time.

Speed / quality knobs (measured by bench/token2wav.py):
- `n_timesteps` (from_dir or per stream; official 10): the flow-matching
  Euler steps; the flow's cost is proportional. 5 steps roughly halve it and
  make real-size CPU streaming faster than real time; audio quality drops
  gently (coarser ODE solve), output no longer equals the reference.
- `first_chunk` (per stream; official 25 codes = 1 s, at least 4): fewer codes
  give the first audio sooner; the audio equals the reference streamed with
  the same chunk boundaries (not quite that of 25-code chunks).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from stepvoice.engine.errors import CheckpointError, StepvoiceError
from stepvoice.engine.token2wav.codes import check_codes
from stepvoice.engine.token2wav.config import SAMPLE_RATE
from stepvoice.engine.token2wav.flow import FlowCache
from stepvoice.engine.token2wav.stream import Stream, VoiceTensors
from stepvoice.engine.token2wav.voice import VoicePreparer, VoicePrompt
from stepvoice.engine.token2wav.weights import load_flow, load_hift

DEFAULT_TIMESTEPS = 10
DEFAULT_CHUNK = 25  # codes per streamed chunk (1 s), as the official streaming
START_CACHE_VOICES = 2  # stream starts kept (each holds the prompt's estimator caches)

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise StepvoiceError(f"unknown dtype {dtype!r} (choose {', '.join(sorted(_DTYPES))})")
    return _DTYPES[dtype]


class Token2Wav:
    sample_rate = SAMPLE_RATE

    def __init__(self, flow, hift, voice_models: Path | None, device: torch.device, dtype: torch.dtype,
                 n_timesteps: int = DEFAULT_TIMESTEPS, seed: int = 0):
        """`voice_models`: the folder holding campplus.onnx and the speech tokenizer, loaded on
        the first `prepare_voice` (voices cached by a voice bank never need them)."""
        if n_timesteps < 1:
            raise StepvoiceError("n_timesteps must be at least 1")
        self.flow, self.hift = flow, hift
        self._voice_models = voice_models
        self._preparer: VoicePreparer | None = None
        self.device, self.dtype = device, dtype
        self.n_timesteps, self.seed = n_timesteps, seed
        self.samples_per_frame = hift.cfg.samples_per_frame
        self._starts: OrderedDict[tuple, FlowCache] = OrderedDict()
        self._lock = threading.Lock()  # guards the stream-start cache
        self._computing: dict[tuple, threading.Lock] = {}  # voices whose stream start is being computed
        self._preparer_lock = threading.Lock()

    @classmethod
    def from_dir(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
                 n_timesteps: int = DEFAULT_TIMESTEPS, seed: int = 0) -> "Token2Wav":
        """Load a token2wav/ folder (or a checkpoint folder that contains one)."""
        path = Path(path)
        if (path / "token2wav").is_dir():
            path = path / "token2wav"
        if not path.is_dir():
            raise CheckpointError(f"no token2wav folder at {path}")
        try:
            device = torch.device(device)
        except RuntimeError as exc:
            raise StepvoiceError(f"unknown device {device!r}: {exc}") from None
        torch_dtype = _dtype(dtype)
        flow = load_flow(path, device, torch_dtype, seed)
        hift = load_hift(path, device)
        return cls(flow, hift, path, device, torch_dtype, n_timesteps, seed)

    # ---- voices
    def prepare_voice(self, wav: str | Path | np.ndarray, sr: int | None = None) -> VoicePrompt:
        """A reference clip (path, or 16 kHz samples) -> VoicePrompt."""
        if self._voice_models is None:
            raise StepvoiceError("this Token2Wav has no voice models (campplus / speech tokenizer)")
        with self._preparer_lock:
            if self._preparer is None:
                self._preparer = VoicePreparer(self._voice_models)
        return self._preparer.prepare(wav, sr)

    def _voice(self, voice: VoicePrompt | str | Path | np.ndarray) -> VoicePrompt:
        if isinstance(voice, VoicePrompt):
            return voice
        return self.prepare_voice(voice)

    def _tensors(self, voice: VoicePrompt) -> VoiceTensors:
        # torch.tensor copies: the prompt's arrays may be read-only (np.load, shared caches).
        return VoiceTensors(
            codes=torch.tensor(voice.codes, device=self.device).unsqueeze(0),
            speaker=torch.tensor(voice.speaker, device=self.device, dtype=self.dtype).unsqueeze(0),
            mel=torch.tensor(voice.mel, device=self.device, dtype=self.dtype).unsqueeze(0),
        )

    # ---- whole utterances
    @torch.inference_mode()
    def _mel(self, codes, voice: VoicePrompt) -> torch.Tensor:
        codes = torch.tensor([check_codes(codes)], dtype=torch.long, device=self.device)
        v = self._tensors(voice)
        return self.flow.inference(codes, v.codes, v.mel, v.speaker, self.n_timesteps).float()

    def mel(self, codes, voice: VoicePrompt | str | Path | np.ndarray) -> np.ndarray:
        """The 80-band 50 Hz mel of `codes` in `voice`: [80, 2 * len(codes)] float32."""
        return self._mel(codes, self._voice(voice))[0].cpu().numpy()

    @torch.inference_mode()
    def vocode(self, mel: np.ndarray | torch.Tensor) -> np.ndarray:
        """[80, T] mel -> 24 kHz float32 waveform (T * 480 samples)."""
        mel = torch.as_tensor(mel, dtype=torch.float32, device=self.device)
        if mel.ndim != 2 or mel.shape[0] != self.hift.cfg.in_channels or mel.shape[1] == 0:
            raise StepvoiceError(f"a mel must be [{self.hift.cfg.in_channels}, T>0], got {tuple(mel.shape)}")
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        wav, _ = self.hift(mel.unsqueeze(0), generator=generator)
        return wav[0].cpu().numpy()

    def synthesize(self, codes, voice: VoicePrompt | str | Path | np.ndarray) -> np.ndarray:
        """Speech for `codes` in `voice`: float32 samples at 24 kHz (480 per mel frame, 960 per code)."""
        mel = self._mel(codes, self._voice(voice))
        return self.vocode(mel[0])

    # ---- streaming
    def _start(self, v: VoiceTensors, key: tuple) -> FlowCache:
        with self._lock:
            if key in self._starts:
                self._starts.move_to_end(key)
                return self._starts[key]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:  # one computation per voice: a stream opened while warm() runs waits for it
            with self._lock:
                if key in self._starts:
                    self._starts.move_to_end(key)
                    return self._starts[key]
            try:
                lookahead = self.flow.pre_lookahead_len
                # Stand-in look-ahead for the prompt's last codes: its first codes, repeated (official recipe).
                reps = -(-lookahead // v.codes.shape[1])
                tokens = torch.cat([v.codes, v.codes.repeat(1, reps)[:, :lookahead]], dim=1)
                with torch.inference_mode():
                    start = self.flow.setup_cache(tokens, v.mel, v.speaker, key[1])
                with self._lock:
                    self._starts[key] = start
                    while len(self._starts) > START_CACHE_VOICES:
                        self._starts.popitem(last=False)
            finally:
                with self._lock:
                    self._computing.pop(key, None)
        return start

    def warm(self, voice: VoicePrompt, n_timesteps: int | None = None) -> None:
        """Compute a voice's stream start now (the prompt through encoder and estimator: the
        bulk of a first chunk's latency), e.g. when the voice is chosen, before any reply."""
        v = self._tensors(voice)
        self._start(v, (voice.fingerprint(), n_timesteps or self.n_timesteps))

    def stream(self, voice: VoicePrompt | str | Path | np.ndarray, first_chunk: int = DEFAULT_CHUNK,
               chunk: int = DEFAULT_CHUNK, n_timesteps: int | None = None) -> Stream:
        """A new stream for one utterance in `voice` (see `engine.token2wav.stream`)."""
        voice = self._voice(voice)
        steps = n_timesteps or self.n_timesteps
        v = self._tensors(voice)
        start = self._start(v, (voice.fingerprint(), steps))
        return Stream(self, v, start, first_chunk=first_chunk, chunk=chunk, n_timesteps=steps, seed=self.seed)

    def clear_cache(self) -> None:
        with self._lock:
            self._starts.clear()
