"""Memory planning: what a checkpoint needs on a device, by part, before any weight is read.

Sizes come from the architecture in config.json (tensor shapes of a meta
model), the dtype and the quantization scheme, so the plan of a 16.6 GB
checkpoint costs milliseconds. `check_fits` is called by the loader and
refuses with one line naming a setting that would fit.

Parts:
- llm: the Qwen2 backbone + lm_head (linear weights quantized when asked;
  embeddings and norms stay in the float dtype);
- audio: encoder + adapter (always the float dtype);
- token2wav: the flow in the precision token2wav will run it in on the device
  (auto: bf16 on CUDA and on CPUs with native bf16, fp16 on MPS) + HiFT in
  fp32 - the ONNX voice models run on the host through onnxruntime and are
  not counted against a GPU;
- kv_cache: keys + values for `context_tokens` positions (per 1k shown too);
- working: prefill activations for one chunk, one 25 s audio piece through
  the encoder, and on GPUs a fixed reserve for the framework (CUDA context, allocator).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from stepvoice.engine.config import StepAudio2Config
from stepvoice.engine.device import describe, free_memory
from stepvoice.engine.errors import CheckpointError
from stepvoice.engine.quant_format import SCHEMES, is_quantized_linear, tensor_scheme, weight_bytes

DEFAULT_CONTEXT_TOKENS = 4096
PREFILL_CHUNK_TOKENS = 2048
FRAMEWORK_RESERVE = 300 * 10**6  # CUDA context + allocator slack, measured ~250-350 MB on recent GPUs
# flow (155.8 M) and HiFT (20.8 M) parameters in fp32, when no token2wav folder is at hand.
FLOW_DEFAULT_BYTES = int(155.8e6 * 4)
HIFT_DEFAULT_BYTES = int(20.8e6 * 4)
GB = 1e9


def human(n: int) -> str:
    """Bytes as "17.9 GB" or "61 MB" (one-line messages)."""
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / 1e6:.0f} MB"


@dataclass
class MemoryPlan:
    device: str
    dtype: str
    quantize: str
    context_tokens: int
    parts: dict[str, int]  # llm, audio, token2wav, kv_cache, working (bytes)
    kv_cache_per_1k: int
    free_bytes: int | None  # None: the device does not say
    suggestions: dict[str, int] = field(default_factory=dict)  # scheme -> total bytes with it

    @property
    def weights_bytes(self) -> int:
        """The checkpoint's own weights (LLM + encoder + adapter), as they sit in memory."""
        return self.parts["llm"] + self.parts["audio"]

    @property
    def total_bytes(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool | None:
        return None if self.free_bytes is None else self.total_bytes <= self.free_bytes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(weights_bytes=self.weights_bytes, total_bytes=self.total_bytes, fits=self.fits)
        return out

    def refusal(self) -> str | None:
        """None when it fits (or the free memory is unknown), else one line naming what would fit."""
        if self.fits is not False:
            return None
        where = describe(torch.device(self.device))
        head = (f"the model needs {human(self.total_bytes)} ({self.quantize if self.quantize != 'none' else self.dtype}, "
                f"{self.context_tokens} tokens of context), {where} has {human(self.free_bytes)} free")
        order = ("none",) + SCHEMES  # lighter schemes later: suggest the first lighter one that fits
        for scheme in order[order.index(self.quantize) + 1:]:
            if self.suggestions.get(scheme, self.free_bytes + 1) <= self.free_bytes:
                return f"{head}: try --quantize {scheme} ({human(self.suggestions[scheme])})"
        if self.device != "cpu":
            return f"{head}: no weight scheme fits; try --device cpu or a smaller context"
        return f"{head}: no weight scheme fits; close other programs or use a machine with more memory"

    def table(self) -> str:
        rows = [("LLM weights", self.parts["llm"]), ("encoder + adapter", self.parts["audio"]),
                ("token2wav (flow + HiFT)", self.parts["token2wav"]),
                (f"KV cache ({self.context_tokens} tokens; {self.kv_cache_per_1k / 1e6:.0f} MB per 1k)",
                 self.parts["kv_cache"]),
                ("working memory", self.parts["working"]), ("total", self.total_bytes)]
        width = max(len(r[0]) for r in rows)
        lines = [f"device {self.device}, dtype {self.dtype}, quantize {self.quantize}"]
        lines += [f"  {name:<{width}}  {size / GB:7.2f} GB" for name, size in rows]
        if self.free_bytes is None:
            lines.append(f"  free on {self.device}: unknown")
        else:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"  {'free on ' + self.device:<{width}}  {self.free_bytes / GB:7.2f} GB  -> {verdict}")
            if not self.fits:
                lines.append(f"  {self.refusal()}")
        if self.suggestions:
            lines.append("  totals by scheme: " + ", ".join(f"{k} {v / GB:.2f} GB" for k, v in self.suggestions.items()))
        return "\n".join(lines)


def _float_bytes(dtype: torch.dtype) -> int:
    return torch.tensor([], dtype=dtype).element_size()


def part_bytes(config: StepAudio2Config, dtype: torch.dtype, quantize: str = "none") -> dict[str, int]:
    """Weight bytes of the llm and audio parts from the architecture's tensor shapes."""
    from stepvoice.engine.checkpoint import params

    size = _float_bytes(dtype)
    out = {"llm": 0, "audio": 0}
    for name, shape in params(config):
        if name.startswith(("encoder.", "adapter.")):
            out["audio"] += math.prod(shape) * size
        elif quantize != "none" and is_quantized_linear(name, shape, quantize):
            out["llm"] += weight_bytes(shape, tensor_scheme(name, quantize))
        else:
            out["llm"] += math.prod(shape) * size
    return out


def kv_bytes(config: StepAudio2Config, dtype: torch.dtype, tokens: int) -> int:
    t = config.text_config
    head_dim = t.hidden_size // t.num_attention_heads
    return 2 * t.num_hidden_layers * t.num_key_value_heads * head_dim * tokens * _float_bytes(dtype)


def working_bytes(config: StepAudio2Config, dtype: torch.dtype, device: torch.device) -> int:
    t, a = config.text_config, config.audio_encoder_config
    size = _float_bytes(dtype)
    # One prefill chunk: hidden states, q/k/v/o and the gate/up products of one layer live at once.
    prefill = PREFILL_CHUNK_TOKENS * (4 * t.hidden_size + 2 * t.intermediate_size) * size
    # One 25 s audio piece: attention scores of one encoder layer (n_ctx^2 per head) dominate.
    encoder = a.n_audio_head * a.n_audio_ctx ** 2 * size + 4 * a.n_audio_ctx * 4 * a.n_audio_state * size
    logits = t.vocab_size * 4
    return prefill + encoder + logits + (FRAMEWORK_RESERVE if device.type != "cpu" else 0)


def token2wav_bytes(folder: Path | None, flow_dtype: torch.dtype = torch.float32, packed: bool = False) -> int:
    """flow.pt (stored in fp32) scaled to the flow's run-time dtype, plus hift.pt (always fp32),
    plus, with `packed` (bf16 on the CPU), the estimator's GEMM weights packed for oneDNN
    (engine.token2wav.cpu_gemm; the official estimator's sizes)."""
    from stepvoice.engine.token2wav.config import DiTConfig
    from stepvoice.engine.token2wav.dit import packed_weight_count

    flow, hift = FLOW_DEFAULT_BYTES, HIFT_DEFAULT_BYTES
    if folder is not None and folder.is_dir():
        files = [folder / "flow.pt", folder / "hift.pt"]
        if all(f.is_file() for f in files):
            flow, hift = (f.stat().st_size for f in files)
    extra = packed_weight_count(DiTConfig()) * _float_bytes(flow_dtype) if packed else 0
    return flow * _float_bytes(flow_dtype) // 4 + hift + extra


def make_plan(config: StepAudio2Config, device: torch.device, dtype: torch.dtype, quantize: str = "none", *,
              context_tokens: int = DEFAULT_CONTEXT_TOKENS, token2wav: Path | None = None,
              speech: bool = True, token2wav_dtype: torch.dtype | str | None = "auto") -> MemoryPlan:
    """The plan for running `config` on `device`; `speech=False` leaves token2wav out.
    `token2wav_dtype`: the flow's precision (auto: what token2wav picks on `device`)."""
    # here: the token2wav package imports all of token2wav
    from stepvoice.engine.token2wav.cpu_gemm import packs_weights
    from stepvoice.engine.token2wav.precision import choose_precision

    if quantize not in ("none",) + SCHEMES:
        raise CheckpointError(f"unknown quantization {quantize!r}; use none, {', '.join(SCHEMES)}")
    flow_dtype = choose_precision(device, token2wav_dtype).flow
    t2w = token2wav_bytes(token2wav, flow_dtype, packs_weights(device, flow_dtype)) if speech else 0
    fixed = {"token2wav": t2w, "kv_cache": kv_bytes(config, dtype, context_tokens),
             "working": working_bytes(config, dtype, device)}
    parts = {**part_bytes(config, dtype, quantize), **fixed}
    suggestions = {}
    for scheme in ("none",) + SCHEMES:
        suggestions[scheme] = sum(part_bytes(config, dtype, scheme).values()) + sum(fixed.values())
    return MemoryPlan(device=str(device), dtype=str(dtype).removeprefix("torch."), quantize=quantize,
                      context_tokens=context_tokens, parts=parts, kv_cache_per_1k=kv_bytes(config, dtype, 1000),
                      free_bytes=free_memory(device), suggestions=suggestions)


def check_fits(plan: MemoryPlan) -> None:
    """Raise CheckpointError with one line when the plan does not fit the device's free memory."""
    line = plan.refusal()
    if line:
        raise CheckpointError(line)
