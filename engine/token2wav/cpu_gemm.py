"""oneDNN linear layers with weights packed once, for the estimator's bf16 inference on CPUs.

aten's bf16 `addmm` on the CPU hands oneDNN each weight in its plain (N, K) layout,
and oneDNN reorders it into its blocked layout on every call: at every Euler step the
estimator's 150 MB of bf16 weights are read, rewritten and read again. `pack` does
that reorder once, at load. The products are the same bit for bit (same kernel, same
blocks); each GEMM measured 10-20% faster at 100 and 1000 rows (a streaming chunk and
an utterance) on a 2-core AVX512-BF16 CPU. The packed copy costs as much memory again
as the weights it packs (`packed_bytes`).

A packed weight remembers the tensors it was made from and their versions: after a
`load_state_dict`, `.to()` or any in-place change it no longer `fits` and the caller
falls back to the plain weights.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

PACKABLE = (torch.bfloat16,)  # oneDNN runs fp16 only on CPUs with AVX512-FP16: left to aten


def _stamp(t: torch.Tensor) -> tuple[int, int]:
    try:
        return t.data_ptr(), t._version
    except RuntimeError:  # inference tensors keep no version counter
        return t.data_ptr(), -1


@dataclass(frozen=True)
class PackedWeight:
    """One linear layer's weight in oneDNN's blocked layout, with its bias."""

    packed: torch.Tensor  # layout torch._mkldnn, (N, K)
    bias: torch.Tensor | None  # (N,)
    sources: tuple[torch.Tensor, ...]  # the weights and biases it was made from
    stamps: tuple[tuple[int, int], ...]

    def fits(self, x: torch.Tensor) -> bool:
        """Whether `x` may use it: same dtype on the CPU, inference (no autograd, not being
        compiled: inductor packs weights itself) and the source tensors unchanged."""
        return (x.dtype == self.packed.dtype and x.device.type == "cpu" and not torch.is_grad_enabled()
                and not torch.compiler.is_compiling() and tuple(map(_stamp, self.sources)) == self.stamps)

    @property
    def nbytes(self) -> int:
        return self.packed.shape[0] * self.packed.shape[1] * self.packed.element_size()


@functools.cache  # asked before every GEMM of the hot path; the answer cannot change in a process
def onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def packs_weights(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether weights of `dtype` on `device` get packed (what `pack` does and the memory plan counts)."""
    return device.type == "cpu" and dtype in PACKABLE and onednn_linear_available()


def pack(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> PackedWeight | None:
    """The weights (output rows concatenated when several; conv weights (out, in, k) flattened
    to (out, in*k)) and biases packed for `linear`; None where oneDNN cannot."""
    if not packs_weights(weights[0].device, weights[0].dtype):
        return None
    with torch.no_grad():
        plain = torch.cat([w.detach().reshape(w.shape[0], -1) for w in weights])
        bias = torch.cat([b.detach() for b in biases]) if biases else None
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(plain)
        except (RuntimeError, AttributeError):
            return None
    sources = (*weights, *biases)
    return PackedWeight(packed, bias, sources, tuple(map(_stamp, sources)))


def pack_each(layers: dict) -> dict:
    """{key: (weights, biases)} -> {key: PackedWeight}: `pack` for each, leaving out what oneDNN cannot pack."""
    packs = {key: pack(weights, biases) for key, (weights, biases) in layers.items()}
    return {key: p for key, p in packs.items() if p is not None}


def linear(x: torch.Tensor, weight: PackedWeight | torch.Tensor, bias: torch.Tensor | None = None,
           activation: str = "none", algorithm: str = "") -> torch.Tensor | None:
    """activation(x W^T + b) in one oneDNN call, the activation applied in fp32 before rounding
    (`torch.ops.mkldnn._linear_pointwise`, what inductor emits on the CPU); `weight` packed (its
    own bias) or plain. None where the op is missing or refuses the input."""
    if not onednn_linear_available():
        return None
    if isinstance(weight, PackedWeight):
        weight, bias = weight.packed, weight.bias
    try:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], algorithm)
    except (RuntimeError, NotImplementedError):
        return None


def run(weight: PackedWeight | None, x: torch.Tensor, activation: str = "none", algorithm: str = "") -> torch.Tensor | None:
    """`linear` with a packed weight where there is one that fits `x`; else None (use the plain layer)."""
    if weight is None or not weight.fits(x):
        return None
    return linear(x, weight, activation=activation, algorithm=algorithm)
