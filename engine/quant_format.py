"""What weight-only quantization touches and how many bytes it leaves (no torchao import here).

Quantized: the 2-D weights of the LLM's linear layers (q/k/v/o, gate/up/down
in every decoder layer) and `lm_head` - the weights read once per token.
Not quantized: embeddings (a lookup reads one row per token, so they cost
memory, not bandwidth), norms, biases, the audio encoder and adapter.
"""
from __future__ import annotations

import math
import re

SCHEMES = ("int8", "int4")
INT4_GROUP_SIZE = 128
_LINEAR = re.compile(r"^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)|lm_head)\.weight$")


def is_quantized_linear(name: str, shape: tuple[int, ...], scheme: str = "int8") -> bool:
    """True for a checkpoint tensor that `--quantize scheme` replaces (int4 needs whole groups of 128
    inputs and, for the CPU kernel, outputs in multiples of 16: layers of smaller fakes stay float)."""
    if len(shape) != 2 or not _LINEAR.match(name):
        return False
    return scheme != "int4" or (shape[1] % INT4_GROUP_SIZE == 0 and shape[0] % 16 == 0)


def weight_bytes(shape: tuple[int, ...], scheme: str) -> int:
    """Bytes of one quantized [out, in] weight with its scales."""
    n, k = shape
    if scheme == "int8":  # int8 values + one fp32 scale and one int8 zero point per output row
        return n * k + n * 5
    if scheme == "int4":  # two values per byte + bf16 scale and zero per group of 128 inputs
        return math.ceil(n * k / 2) + n * (k // INT4_GROUP_SIZE) * 4
    raise ValueError(f"unknown scheme {scheme!r}")
