"""A KV cache reserved up front, owned by one generation.

Each layer writes its new keys/values into a buffer sized for the whole
generation (prompt + max_new_tokens) and hands attention a view of the
filled part, instead of concatenating the whole history at every token as
transformers' DynamicCache does. If a generation outgrows its reservation
(e.g. ids appended after a Think model's thought) the buffer doubles.

It plugs into transformers' Qwen2 through the `Cache` layer interface, so the
model code stays stock. With a transformers too old for cache layers,
`new_kv_cache` falls back to DynamicCache.
"""
from __future__ import annotations

from typing import Any

import torch

try:  # transformers >= 4.56: caches are lists of layer objects
    from transformers.cache_utils import Cache, DynamicLayer
except ImportError:  # pragma: no cover - older transformers
    Cache = DynamicLayer = None  # type: ignore[assignment,misc]


if DynamicLayer is not None:

    class PreallocatedLayer(DynamicLayer):
        """One layer's keys and values: (B, kv_heads, capacity, head_dim) buffers + a fill length."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = max(1, int(capacity))
            self.length = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            B, H, S, D = key_states.shape
            size = max(self.capacity, S)
            self._keys = key_states.new_empty(B, H, size, D)
            self._values = value_states.new_empty(B, H, size, value_states.shape[-1])
            self.keys, self.values = self._keys[:, :, :0], self._values[:, :, :0]
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self._keys.shape[-2]:
                self._grow(max(end, 2 * self._keys.shape[-2]))
            self._keys[:, :, self.length : end] = key_states
            self._values[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

        def _grow(self, size: int) -> None:
            keys = self._keys.new_zeros(*self._keys.shape[:2], size, self._keys.shape[-1])
            values = self._values.new_zeros(*self._values.shape[:2], size, self._values.shape[-1])
            keys[:, :, : self.length] = self._keys[:, :, : self.length]
            values[:, :, : self.length] = self._values[:, :, : self.length]
            self._keys, self._values = keys, values

        def get_seq_length(self) -> int:
            return self.length

        def crop(self, max_length: int) -> None:
            """transformers' semantics: keep the first `max_length` positions, or drop -`max_length`
            from the end when it is negative (the storage stays, so a compiled step keeps its shapes)."""
            keep = self.length + max_length if max_length < 0 else min(max_length, self.length)
            self.length = max(0, keep)
            if self.is_initialized:
                self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

        def reset(self) -> None:
            self.length = 0
            super().reset()

    class KVCache(Cache):
        """The cache of one generation: one PreallocatedLayer per decoder layer."""

        def __init__(self, num_layers: int, capacity: int):
            super().__init__(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])


    class StaticKVCache(KVCache):
        """A KVCache whose buffers exist from the start, at fixed shapes, for the compiled decode step.

        Buffers are (1, kv_heads, capacity, head_dim). Eager prefill writes into
        them through the layer API above; the compiled step (engine.compile)
        writes one position in place and then calls `set_length`. Keeping the
        object across turns and `crop`ping it to a common prefix keeps the
        same storage, so the compiled step is not recompiled; only outgrowing
        the capacity reallocates (one recompile per doubling).
        """

        def __init__(self, num_layers: int, capacity: int, kv_heads: int, head_dim: int,
                     device: torch.device | str, dtype: torch.dtype):
            super().__init__(num_layers, capacity)
            empty = torch.empty(1, kv_heads, 0, head_dim, device=device, dtype=dtype)
            for layer in self.layers:
                layer.lazy_initialization(empty, empty)
                # Zeros, not garbage: masked positions still enter the attention matmul (0 * NaN = NaN).
                layer._keys.zero_()
                layer._values.zero_()

        @property
        def capacity(self) -> int:
            return self.layers[0]._keys.shape[-2]

        def buffers(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            """Full-capacity key and value buffers, one per layer (the compiled step's inputs)."""
            return [l._keys for l in self.layers], [l._values for l in self.layers]

        def set_length(self, length: int) -> None:
            """After the compiled step wrote positions < `length` in place."""
            for layer in self.layers:
                layer.length = length
                layer.keys, layer.values = layer._keys[:, :, :length], layer._values[:, :, :length]

        def ensure_capacity(self, needed: int) -> None:
            if needed > self.capacity:
                for layer in self.layers:
                    layer._grow(max(needed, 2 * layer._keys.shape[-2]))


def new_kv_cache(qwen2_config: Any, capacity: int) -> Any:
    """A cache for `capacity` positions (it grows if needed)."""
    if DynamicLayer is None:  # pragma: no cover
        from transformers import DynamicCache

        return DynamicCache()
    return KVCache(qwen2_config.num_hidden_layers, capacity)
