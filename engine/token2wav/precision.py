"""Which precision token2wav runs in, per device, and why.

`choose_precision(device, "auto")` picks:
- CPU: bf16 for the flow when the CPU multiplies bf16 natively (x86 flags
  `amx_bf16` or `avx512_bf16`, and torch's oneDNN reports bf16 support):
  its GEMMs run 3-5x faster than fp32 there and the measured quality loss is
  small (README, token2wav precision table). Elsewhere fp32: oneDNN would
  emulate bf16 with conversions, slower than fp32.
- CUDA: bf16 where the GPU supports it (the precision measured in the table),
  else fp16 (Volta/Turing: no bf16 tensor cores; fp16 also in the table).
- MPS: fp16 (Apple GPUs run it natively on every macOS torch supports; bf16
  needs macOS 14+).
The vocoder (HiFT): its F0 predictor, sine source and inverse STFT always
stay fp32 (the source accumulates phase over thousands of samples, where 8
mantissa bits would detune it); its conv stack runs in bf16 where the flow
does on the CPU (1.8x faster vocoding, waveform SNR 45.7 dB against fp32 on
the same mel: README), fp32 elsewhere (on GPUs it is a small share of the
time). An explicit fp32 request keeps everything fp32 (the parity path).

`token2wav_precision(device, requested)` is what `stepvoice doctor` shows
(no weights loaded).
"""
from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from stepvoice.engine.errors import StepvoiceError

log = logging.getLogger(__name__)

NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
_ALIASES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
            "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
CHOICES = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 dot-product instructions


@dataclass(frozen=True)
class Precision:
    """The flow's dtype, the vocoder's, and one line saying why."""

    flow: torch.dtype
    vocoder: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return NAMES.get(self.flow, str(self.flow))

    def as_dict(self) -> dict:
        return {"flow": self.name, "vocoder": NAMES.get(self.vocoder, str(self.vocoder)), "reason": self.reason}


def parse_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """A dtype from a flag / config value; None for auto. Raises StepvoiceError on unknown names."""
    if value is None or isinstance(value, torch.dtype):
        return value
    name = str(value).strip().lower()
    if name == "auto":
        return None
    if name not in _ALIASES:
        raise StepvoiceError(f"unknown dtype {value!r} for token2wav (choose {', '.join(CHOICES)})")
    return _ALIASES[name]


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, arm
            return set(value.split())
    return set()


def onednn_bf16() -> bool:
    """Whether torch's oneDNN (mkldnn) backend runs bf16 on this CPU."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_support() -> tuple[bool, str]:
    """(fast bf16 matmuls?, why): native bf16 instructions and oneDNN that uses them."""
    flags = cpu_flags()
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    machine = platform.machine() or "unknown CPU"
    if not native:
        what = "no amx_bf16/avx512_bf16 in the CPU flags" if flags else f"no CPU flags readable on {machine}"
        return False, what
    if not onednn_bf16():
        return False, f"CPU has {'/'.join(native)} but torch's oneDNN does not run bf16 here"
    return True, f"CPU has {'/'.join(native)} (native bf16 matmuls via oneDNN)"


def choose_precision(device: torch.device | str = "cpu", requested: torch.dtype | str | None = "auto") -> Precision:
    """The precision token2wav runs in on `device`; `requested` (a dtype, a name or auto) overrides auto."""
    device = torch.device(device)
    dtype = parse_dtype(requested)
    if dtype is not None:
        if dtype == torch.bfloat16 and device.type == "cpu" and cpu_bf16_support()[0]:
            return Precision(dtype, torch.bfloat16, "bf16 as requested (vocoder convs bf16, source and iSTFT fp32)")
        return Precision(dtype, torch.float32, f"{NAMES[dtype]} as requested")
    if device.type == "cpu":
        fast, why = cpu_bf16_support()
        if fast:
            return Precision(torch.bfloat16, torch.bfloat16,
                             f"auto: bf16 flow and vocoder convs (source and iSTFT fp32): {why}")
        return Precision(torch.float32, torch.float32, f"auto: fp32: {why} (bf16 would be emulated, slower)")
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, torch.float32, "auto: bf16 flow, fp32 vocoder: the GPU supports bf16")
        return Precision(torch.float16, torch.float32, "auto: fp16 flow, fp32 vocoder: the GPU has no bf16")
    if device.type == "mps":
        return Precision(torch.float16, torch.float32, "auto: fp16 flow, fp32 vocoder: Apple GPU (native fp16)")
    return Precision(torch.float32, torch.float32, f"auto: fp32 on {device.type} (no reduced precision measured)")


def token2wav_precision(device: str = "cpu", requested: str | None = "auto") -> dict:
    """For `stepvoice doctor`: {"device", "flow", "vocoder", "reason", "first_chunk"} without loading weights."""
    from stepvoice.engine.token2wav.token2wav import default_first_chunk

    choice = choose_precision(device, requested)
    return {"device": str(torch.device(device)), **choice.as_dict(),
            "first_chunk": default_first_chunk(torch.device(device), choice.flow)}
