"""`Token2Wav`: a checkpoint's token2wav/ folder as one object.

    t2w = Token2Wav.from_dir("Step-Audio-2-mini/token2wav", device="cpu")
    voice = t2w.prepare_voice("reference.wav")        # VoicePrompt, cacheable
    wav = t2w.synthesize(codes, voice)                # float32, 24 kHz
    s = t2w.stream(voice); s.push(codes[:40]); s.finish()

Runs on any torch device. `dtype="auto"` (the default) picks the flow's
precision per device (bf16 on CPUs with native bf16 matmuls, fp32 on other
CPUs, bf16/fp16 on GPUs: `engine.token2wav.precision`); the vocoder's conv
stack follows in bf16 on those CPUs, its source and iSTFT stay fp32;
`precision.reason` says why, and the choice is logged. On a bf16 CPU the
estimator's weights are also packed for oneDNN at load (0.15 GB, cpu_gemm).
Outputs are reproducible: the flow's noise comes from
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
- `first_chunk` (per stream; official 25 codes = 1 s, at least 4; default
  per device, `default_first_chunk`): fewer codes give the first audio
  sooner; the audio equals the reference streamed with the same chunk
  boundaries (not quite that of 25-code chunks).
- `compile` (from_dir): the estimator's block step through torch.compile
  (inductor). Off by default: on a 2-core CPU it measured no faster than
  eager (the DiT is GEMM-bound; inductor only fuses the elementwise ops)
  while each cache layout costs about a minute of compiling
  (bench/token2wav.py has the rows).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from stepvoice.engine.errors import CheckpointError, StepvoiceError
from stepvoice.engine.token2wav.codes import check_codes
from stepvoice.engine.token2wav.config import SAMPLE_RATE
from stepvoice.engine.token2wav.flow import FlowCache
from stepvoice.engine.token2wav.precision import Precision, choose_precision
from stepvoice.engine.token2wav.stream import Stream, VoiceTensors
from stepvoice.engine.token2wav.voice import VoicePreparer, VoicePrompt
from stepvoice.engine.token2wav.weights import load_flow, load_hift

DEFAULT_TIMESTEPS = 10
DEFAULT_CHUNK = 25  # codes per streamed chunk (1 s), as the official streaming
START_CACHE_VOICES = 2  # stream starts kept (each holds the prompt's estimator caches)
# First streamed chunk (codes) per device type: on a 2-core CPU a 10-code chunk (+3 look-ahead)
# comes out of a warm voice in about half the time of the official 25 (bench/token2wav.py);
# GPUs compute either in tens of ms, so what counts there is how soon the model has produced
# the codes: 10 codes + 3 look-ahead is 0.4 s of speech tokens instead of 1.1 s.
FIRST_CHUNK = {"cpu": 10, "cuda": 10, "mps": 10}

log = logging.getLogger(__name__)


def default_first_chunk(device: torch.device, dtype: torch.dtype) -> int:
    """Codes in a stream's first chunk on `device` (see FIRST_CHUNK)."""
    return FIRST_CHUNK.get(device.type, DEFAULT_CHUNK)


class Token2Wav:
    sample_rate = SAMPLE_RATE

    def __init__(self, flow, hift, voice_models: Path | None, device: torch.device, dtype: torch.dtype,
                 n_timesteps: int = DEFAULT_TIMESTEPS, seed: int = 0, precision: Precision | None = None,
                 first_chunk: int | None = None):
        """`voice_models`: the folder holding campplus.onnx and the speech tokenizer, loaded on
        the first `prepare_voice` (voices cached by a voice bank never need them)."""
        if n_timesteps < 1:
            raise StepvoiceError("n_timesteps must be at least 1")
        self.precision = precision or Precision(dtype, torch.float32, f"{dtype} as given")
        self.first_chunk = first_chunk or default_first_chunk(device, dtype)
        self.compiled = False
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
    def from_dir(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = "auto",
                 n_timesteps: int = DEFAULT_TIMESTEPS, seed: int = 0, compile: bool = False,
                 first_chunk: int | None = None) -> "Token2Wav":
        """Load a token2wav/ folder (or a checkpoint folder that contains one).

        dtype: "auto" (per device, see `engine.token2wav.precision`), "fp32", "bf16", "fp16" or a
        torch dtype; None means fp32. n_timesteps: Euler steps (quality/speed table in the README).
        compile: torch.compile the estimator's step. first_chunk: codes in a stream's first chunk
        (default per device)."""
        path = Path(path)
        if (path / "token2wav").is_dir():
            path = path / "token2wav"
        if not path.is_dir():
            raise CheckpointError(f"no token2wav folder at {path}")
        try:
            device = torch.device(device)
        except RuntimeError as exc:
            raise StepvoiceError(f"unknown device {device!r}: {exc}") from None
        if n_timesteps is None or int(n_timesteps) < 1:
            raise StepvoiceError(f"token2wav steps must be at least 1, got {n_timesteps!r}")
        precision = choose_precision(device, "fp32" if dtype is None else dtype)
        log.info("token2wav on %s: %s", device, precision.reason)
        flow = load_flow(path, device, precision.flow, seed)
        hift = load_hift(path, device)
        hift.set_decode_dtype(precision.vocoder)
        if not compile:  # inductor packs its own weights
            packed = flow.decoder.estimator.pack_weights()
            if packed:
                log.info("token2wav: estimator weights packed for oneDNN (%.0f MB)", packed / 1e6)
        t2w = cls(flow, hift, path, device, precision.flow, int(n_timesteps), seed, precision, first_chunk)
        if compile:
            t2w.compile()
        return t2w

    def compile(self) -> None:
        """Run the estimator's block step through torch.compile (inductor; dynamic shapes: chunks and
        caches change length). The first calls compile (about a minute per cache layout on a small
        CPU); outputs stay within float rounding of eager."""
        if not self.compiled:
            self.flow.decoder.estimator.compile_blocks()
            self.compiled = True

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

    def stream(self, voice: VoicePrompt | str | Path | np.ndarray, first_chunk: int | None = None,
               chunk: int = DEFAULT_CHUNK, n_timesteps: int | None = None) -> Stream:
        """A new stream for one utterance in `voice` (see `engine.token2wav.stream`); first_chunk
        defaults to this device's (`self.first_chunk`)."""
        voice = self._voice(voice)
        first_chunk = first_chunk or self.first_chunk
        steps = n_timesteps or self.n_timesteps
        v = self._tensors(voice)
        start = self._start(v, (voice.fingerprint(), steps))
        return Stream(self, v, start, first_chunk=first_chunk, chunk=chunk, n_timesteps=steps, seed=self.seed)

    def clear_cache(self) -> None:
        with self._lock:
            self._starts.clear()
