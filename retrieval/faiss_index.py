"""FAISS indexes for the store: exact inner product for small collections, IVF-Flat for big ones.

Both keep explicit int64 ids (the SQLite row ids) and take add/remove by id,
so the store never needs a full rebuild for an update. IVF over HNSW: HNSW
cannot remove vectors, and IVF-Flat reaches the latency goal (bench/retrieval.py).
"""
from __future__ import annotations

import faiss
import numpy as np

KMEANS_ITERATIONS = 10  # IVF training: centroids barely move after ~10 rounds on embedding data


def nlist_for(n: int) -> int:
    """IVF list count: ~4*sqrt(n), the usual rule, kept within sane bounds."""
    return int(min(65536, max(16, 4 * np.sqrt(max(n, 1)))))


def build_index(dim: int, vectors: np.ndarray, ids: np.ndarray, *, approximate: bool, nprobe: int = 48) -> faiss.Index:
    """A FAISS inner-product index over `vectors` with explicit int64 `ids` (exact or IVF-Flat)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if not approximate:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        nlist = nlist_for(len(vectors))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = KMEANS_ITERATIONS
        # 40 points per centroid train as well as all of them at a fraction of the time
        sample = vectors
        if len(vectors) > 40 * nlist:
            pick = np.random.default_rng(0).choice(len(vectors), 40 * nlist, replace=False)
            sample = vectors[np.sort(pick)]
        index.train(sample)
        index.nprobe = nprobe
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


def is_approximate(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexIVF)
