"""Log-mel features remembered per audio array, so a conversation's earlier audio turns are
not re-featurized at every turn (prefix reuse makes the rest of a turn's cost flat).

Keyed by the identity of the samples array a message holds (history keeps the same
`Audio` part from turn to turn) and dropped when that array is freed. Audio arrays are
treated as immutable, as everywhere in the engine.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Sequence

import numpy as np
import torch

_CACHE: dict[int, tuple[weakref.ref, list[torch.Tensor]]] = {}
_LOCK = threading.Lock()


def piece_mels(source: Any, pieces: Sequence[np.ndarray], featurize: Callable[[np.ndarray], torch.Tensor]
               ) -> list[torch.Tensor]:
    """`featurize(piece)` for each piece of `source` (an audio part's samples), computed once per array."""
    key = id(source)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0]() is source and len(hit[1]) == len(pieces):
            return list(hit[1])
    mels = [featurize(p) for p in pieces]
    try:
        ref = weakref.ref(source, lambda _r, k=key: _forget(k, _r))
    except TypeError:  # not weak-referenceable (a list of floats): no memory
        return mels
    with _LOCK:
        _CACHE[key] = (ref, mels)
    return list(mels)


def _forget(key: int, ref: weakref.ref) -> None:
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] is ref:
            del _CACHE[key]


__all__ = ["piece_mels"]
