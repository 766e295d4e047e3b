"""Prefix reuse across the turns of one conversation (local torch backend).

A session keeps one `PrefixCache`: the KV cache of its latest generation and
the ids (and audio pieces) whose keys/values it holds. The next request runs
only what follows the longest common prefix: `common_prefix` compares ids,
and for audio also the mel features (audio turns are runs of identical
`<audio_patch>` ids, so equal ids do not mean equal audio), and never stops
inside an audio piece (the encoder needs the whole piece). Everything after
the first changed id (compaction, barge-in truncation, a new system prompt,
an edited turn) is cropped away, so the result equals a fresh prefill.

One generation uses the cache at a time (`claim`/`release`); a second one at
the same moment simply runs without reuse. A failed generation drops the
cache (its state may be half-written); a cancelled one keeps what it ran.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch


@dataclass
class Reuse:
    """What one generation takes from the cache: `cached` leading ids are already in `cache`."""

    cache: Any
    cached: int


@dataclass
class PrefixCache:
    """The kept KV cache of one conversation and what it holds."""

    enabled: bool = True
    cache: Any = None
    ids: list[int] = field(default_factory=list)  # ids whose keys/values are in `cache`, in order
    audio: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (audio_start index, mel) in `ids`
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _busy: bool = field(default=False, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def common_prefix(self, ids: Sequence[int], mels: Sequence[torch.Tensor], audio_starts: Sequence[int]) -> int:
        """How many leading ids of the new prompt the cache already holds, exactly."""
        n = 0
        limit = min(len(self.ids), len(ids))
        while n < limit and self.ids[n] == ids[n]:
            n += 1
        new_audio = dict(zip(audio_starts, mels))
        for start, mel in self.audio:
            if start >= n:
                break
            other = new_audio.get(start)
            if other is None or other.shape != mel.shape or not torch.equal(other, mel):
                n = start  # the piece differs: its <audio_start> and everything after run again
                break
        # never cut an audio piece (of either prompt) in two: the encoder needs all of it
        spans = [(s, _patches(ids, s)) for s in audio_starts] + [(s, _patches(self.ids, s)) for s, _ in self.audio]
        for start, patches in sorted(spans):
            if start < n <= start + patches:
                n = start
                break
        return n

    def claim(self) -> bool:
        """Reserve the cache for one generation; False: reuse is off or another generation holds it."""
        if not self.enabled:
            return False
        with self._lock:
            if self._busy:
                return False
            self._busy = True
            return True

    def take(self, ids: Sequence[int], mels: Sequence[torch.Tensor], audio_starts: Sequence[int]) -> Reuse:
        """(Claimed.) The cache cropped to the common prefix with a new prompt, at most
        len(ids) - 1 ids: the last prompt id must run to give the first logits."""
        if self.cache is None:
            return Reuse(None, 0)
        n = min(self.common_prefix(ids, mels, audio_starts), len(ids) - 1)
        self.crop(max(0, n))
        return Reuse(self.cache, len(self.ids))

    def keep(self, cache: Any, ids: Sequence[int], mels: Sequence[torch.Tensor], audio_starts: Sequence[int]) -> None:
        """(Claimed.) `cache` now holds the keys/values of `ids` (audio pieces from the prompt)."""
        self.cache, self.ids = cache, list(ids)
        self.audio = [(s, m) for s, m in zip(audio_starts, mels) if s < len(self.ids)]
        if not self.ids:
            self.cache = None

    def crop(self, n: int) -> None:
        """Keep the first `n` ids (roll back a discarded or rewritten tail)."""
        n = max(0, min(n, len(self.ids)))
        if self.cache is not None and n < len(self.ids):
            self.cache.crop(n - len(self.ids))  # a negative count: tokens removed from the end
        self.ids = self.ids[:n]
        self.audio = [(s, m) for s, m in self.audio if s < n]
        if n == 0:
            self.cache = None

    def release(self, *, ok: bool) -> None:
        """End of the claiming generation; not ok (failed, or stopped mid-step): drop the cache."""
        if not ok:
            self.cache, self.ids, self.audio = None, [], []
        with self._lock:
            self._busy = False

    def reset(self) -> None:
        self.crop(0)


def _patches(ids: Sequence[int], start: int) -> int:
    """`<audio_patch>` slots after the `<audio_start>` at `start` (up to the next different id)."""
    if start + 1 >= len(ids):
        return 0
    patch = ids[start + 1]
    n = 0
    while start + 1 + n < len(ids) and ids[start + 1 + n] == patch:
        n += 1
    return n


__all__ = ["PrefixCache", "Reuse"]
