"""What weight-only quantization touches and how many bytes it leaves (no torchao import here).

Quantized: the 2-D weights of the LLM's linear layers (q/k/v/o, gate/up/down
in every decoder layer) and `lm_head` - the weights read once per token.
Not quantized: embeddings (a lookup reads one row per token, so they cost
memory, not bandwidth), norms, biases, the audio encoder and adapter.

`int4` is mixed, as llama.cpp's Q4_K_M keeps its most sensitive tensors at
higher precision: the MLP and lm_head in 4 bits (groups of 128), the attention
projections in int8. They are 12.6% of a layer's weights but most of its int4
error: at the real width (random weights, 256 tokens, 1 layer) the last
hidden state's cosine with bf16 is 0.917 with all seven in int4 and 0.984
with attention in int8; q or k alone in int4 already costs 0.02 (tests/
test_engine_quantize.py, bench notes in README). The price is 0.41 GB.
"""
from __future__ import annotations

import math
import re

SCHEMES = ("int8", "int4")
INT4_GROUP_SIZE = 128
_LINEAR = re.compile(r"^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)|lm_head)\.weight$")
_ATTENTION = re.compile(r"\.self_attn\.[qkvo]_proj\.weight$")


def tensor_scheme(name: str, scheme: str) -> str:
    """The scheme one weight gets under `scheme` (int4 keeps the attention projections in int8)."""
    if scheme == "int4" and _ATTENTION.search(name):
        return "int8"
    return scheme


def is_quantized_linear(name: str, shape: tuple[int, ...], scheme: str = "int8") -> bool:
    """True for a checkpoint tensor that `--quantize scheme` replaces (int4 needs whole groups of 128
    inputs and, for the CPU kernel, outputs in multiples of 16: layers of smaller fakes stay float)."""
    if len(shape) != 2 or not _LINEAR.match(name):
        return False
    return tensor_scheme(name, scheme) != "int4" or (shape[1] % INT4_GROUP_SIZE == 0 and shape[0] % 16 == 0)


def weight_bytes(shape: tuple[int, ...], scheme: str) -> int:
    """Bytes of one [out, in] weight quantized with `scheme` (a tensor's own scheme: see `tensor_scheme`)."""
    n, k = shape
    if scheme == "int8":  # int8 values + one fp32 scale and one int8 zero point per output row
        return n * k + n * 5
    if scheme == "int4":  # two values per byte + bf16 scale and zero per group of 128 inputs
        return math.ceil(n * k / 2) + n * (k // INT4_GROUP_SIZE) * 4
    raise ValueError(f"unknown scheme {scheme!r}")
