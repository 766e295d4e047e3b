"""Search API over a data dir: a text store (chunks, transcripts, voice descriptions) and an audio store.

Layout: DATA/index/text.* (one text embedder) and DATA/index/audio-<speaker
embedder>.* (one speaker embedder; switching embedders starts a new audio
store instead of mixing vector spaces). Embedders load on first use.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from stepvoice.retrieval.ingest import ChunkingConfig, Document, IngestError, collect_files, item_hash, read_document
from stepvoice.retrieval.speaker_embedder import SpeakerEmbedder, load_speaker_embedder
from stepvoice.retrieval.store import NewItem, Store, StoreConfig
from stepvoice.retrieval.text_embedder import TextEmbedder, load_text_embedder

log = logging.getLogger(__name__)

EMBED_BATCH = 64  # chunks embedded (and committed) together


@dataclass(frozen=True)
class Hit:
    id: int
    kind: str
    source: str
    text: str
    score: float
    path: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "source": self.source, "text": self.text,
                "score": round(self.score, 4), "path": self.path}


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)  # sources stored (new or changed)
    unchanged: list[str] = field(default_factory=list)  # same bytes as already stored
    skipped: list[str] = field(default_factory=list)  # "path: reason" (only with skip_bad)
    items: int = 0  # rows written


class Retriever:
    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        text_embedder: "str | TextEmbedder | None" = None,
        speaker_embedder: "str | SpeakerEmbedder | None" = None,
        checkpoint: str | os.PathLike | None = None,
        store_config: StoreConfig | None = None,
        chunking: ChunkingConfig | None = None,
        index_dir: str | os.PathLike | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.index_dir = Path(index_dir) if index_dir else self.data_dir / "index"
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self._text_spec = text_embedder
        self._speaker_spec = speaker_embedder
        self._checkpoint = checkpoint
        self.store_config = store_config or StoreConfig()
        self.chunking = chunking or ChunkingConfig()
        self._text_embedder: TextEmbedder | None = None
        self._speaker_embedder: SpeakerEmbedder | None = None
        self._text_store: Store | None = None
        self._audio_store: Store | None = None
        self._other_stores: list[Store] = []  # stores of other speaker embedders, opened for list/rm

    @classmethod
    def open(cls, data_dir: str | os.PathLike, **kwargs) -> "Retriever":
        return cls(data_dir, **kwargs)

    # ----- lazily built parts ------------------------------------------------------------
    @property
    def text_embedder(self) -> TextEmbedder:
        if self._text_embedder is None:
            self._text_embedder = load_text_embedder(self._text_spec)
        return self._text_embedder

    @property
    def speaker_embedder(self) -> SpeakerEmbedder:
        if self._speaker_embedder is None:
            self._speaker_embedder = load_speaker_embedder(self._speaker_spec, checkpoint=self._checkpoint)
        return self._speaker_embedder

    @property
    def text_store(self) -> Store:
        if self._text_store is None:
            e = self.text_embedder
            self._text_store = Store(self.index_dir / "text", e.dim, e.name, self.store_config)
        return self._text_store

    @property
    def audio_store(self) -> Store:
        if self._audio_store is None:
            e = self.speaker_embedder
            self._audio_store = Store(self.index_dir / f"audio-{e.name}", e.dim, e.name, self.store_config)
        return self._audio_store

    # ----- search ----------------------------------------------------------------------
    def search(self, query: "str | np.ndarray", k: int = 5, kind: str | None = None, source: str | None = None) -> list[Hit]:
        """Text query -> nearest text rows; 16 kHz audio (ndarray) -> nearest clips by voice."""
        if isinstance(query, np.ndarray):
            return self.search_audio(query, k, kind=kind, source=source)
        if not query or not query.strip():
            return []
        vec = self.text_embedder.embed([query], query=True)[0]
        return [_hit(r, s) for r, s in self.text_store.search(vec, k, kind=kind, source=source)]

    def search_audio(self, samples: np.ndarray, k: int = 5, *, kind: str | None = None, source: str | None = None) -> list[Hit]:
        vec = self.speaker_embedder.embed(samples)
        return [_hit(r, s) for r, s in self.audio_store.search(vec, k, kind=kind, source=source)]

    # ----- writes ----------------------------------------------------------------------
    def add_text(self, text: str, source: str, *, kind: str = "text", path: str | None = None,
                 extra: dict | None = None, replace: bool = True) -> list[int]:
        """Index one text under `source` (its old rows replaced); long texts are chunked."""
        chunks = [text.strip()] if len(text) <= self.chunking.size else _chunks(text, self.chunking)
        if not chunks or not chunks[0]:
            raise IngestError(f"{source}: empty text")
        vecs = self.text_embedder.embed(chunks)
        digest = item_hash(kind, source, text)
        items = [NewItem(kind, source, item_hash(kind, source, c), c, path, digest, extra or {}) for c in chunks]
        return self.text_store.add(items, vecs, replace_source=source if replace else None)

    def add_audio(self, samples: np.ndarray, source: str, *, kind: str = "audio", path: str | None = None,
                  transcript: str | None = None, source_hash: str | None = None,
                  extra: dict | None = None) -> list[int] | None:
        """Index one clip's speaker vector (and its transcript in the text store) under `source`.

        None when `source_hash` is given and already stored for `source`."""
        vec = self.speaker_embedder.embed(samples)
        digest = source_hash or item_hash(kind, source, f"{len(samples)}:{float(np.sum(np.abs(samples))):.6f}")
        item = NewItem(kind, source, item_hash(kind, source, digest), transcript or "", path, digest, extra or {})
        ids = self.audio_store.add([item], vec[None], replace_source=source,
                                   unless_source_hash=digest if source_hash else None)
        if ids is None:
            return None
        if transcript:
            self.text_store.add(
                [NewItem("transcript", source, item_hash("transcript", source, transcript), transcript, path, digest)],
                self.text_embedder.embed([transcript]), replace_source=source,
            )
        elif self.text_store.source_hash(source) is not None:
            self.text_store.remove(source=source)
        return ids

    def add_paths(self, paths: Iterable[str | os.PathLike], *, skip_bad: bool = False,
                  progress: bool | None = None, on_file: Callable[[Document], None] | None = None,
                  follow_links: bool = False) -> IngestReport:
        """Index files and folders. All files are read and checked first: with a bad one (and not
        `skip_bad`) an IngestError is raised and nothing is written. Unchanged files are skipped,
        changed ones replaced (one transaction per file)."""
        from tqdm import tqdm

        report = IngestReport()
        files = collect_files(paths, follow_links=follow_links)
        if not files:
            raise IngestError("no supported files found (text, Markdown, HTML, PDF or audio)")
        show = progress if progress is not None else (len(files) > 20 and sys.stderr.isatty())
        docs: list[Document] = []
        problems: list[str] = []
        for f in tqdm(files, desc="reading", unit="file", disable=not show):
            try:
                docs.append(read_document(f, self.chunking))
            except IngestError as e:
                problems.append(str(e))
        if problems and not skip_bad:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise IngestError(f"{problems[0]}{more}; nothing was added")
        report.skipped = problems
        total = sum(len(d.chunks) or 1 for d in docs)
        if total > self.chunking.max_chunks_per_run:  # before any embedding or writing
            raise IngestError(f"{total:,} chunks in this run; at most {self.chunking.max_chunks_per_run:,} per run: "
                              "add fewer files at a time; nothing was added")
        with tqdm(total=total, desc="indexing", unit="chunk", disable=not show) as bar:
            for doc in docs:
                store = self.audio_store if doc.kind == "audio" else self.text_store
                if store.source_hash(doc.source) == doc.source_hash:
                    report.unchanged.append(doc.source)
                    bar.update(len(doc.chunks) or 1)
                    continue
                if doc.kind == "audio":
                    ids = self.add_audio(doc.samples, doc.source, path=doc.path, transcript=doc.transcript,
                                         source_hash=doc.source_hash)
                else:
                    ids = self._add_chunks(doc, bar)
                if ids is None:  # another process stored the same bytes meanwhile
                    report.unchanged.append(doc.source)
                    continue
                report.items += len(ids)
                report.added.append(doc.source)
                if on_file:
                    on_file(doc)
        return report

    def _add_chunks(self, doc: Document, bar) -> list[int] | None:
        # embed everything first, then one transaction: a crash leaves the old version or the new, never half
        vecs = np.concatenate([self.text_embedder.embed(doc.chunks[i : i + EMBED_BATCH])
                               for i in range(0, len(doc.chunks), EMBED_BATCH)])
        bar.update(len(doc.chunks))
        items = [NewItem("text", doc.source, item_hash("text", doc.source, f"{n}\0{c}"), c, doc.path, doc.source_hash,
                         {"chunk": n}) for n, c in enumerate(doc.chunks)]
        return self.text_store.add(items, vecs, replace_source=doc.source, unless_source_hash=doc.source_hash)

    def _stores_on_disk(self) -> list[Store]:
        """Every store in the index dir, opened as recorded in its own meta (no embedder is loaded)."""
        import sqlite3

        open_ = {s.db_path: s for s in (*self._other_stores, self._text_store, self._audio_store) if s is not None}
        stores = []
        for db in sorted(self.index_dir.glob("*.sqlite")):
            if db in open_:
                stores.append(open_[db])
                continue
            try:
                con = sqlite3.connect(str(db))
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
                con.close()
            except sqlite3.DatabaseError as e:
                log.warning("skipping unreadable index %s: %s", db, e)
                continue
            # kept apart from text_store/audio_store: those also check the configured embedder
            store = Store(db.with_suffix(""), int(meta["dim"]), meta["embedder"], self.store_config)
            self._other_stores.append(store)
            stores.append(store)
        return stores

    def sources(self, kind: str | None = None) -> list[dict]:
        """Indexed sources across all stores: source, kind, items, added."""
        out = [row for store in self._stores_on_disk() for row in store.sources()]
        return [s for s in out if kind is None or s["kind"] == kind]

    def remove(self, source: str) -> int:
        """Remove every row of a source (a path is resolved first) from every store."""
        candidates = {source}
        p = Path(source).expanduser()
        if p.exists() or p.is_absolute() or os.sep in source:
            candidates.add(str(p.resolve()))
        return sum(store.remove(source=src) for store in self._stores_on_disk() for src in candidates)

    def close(self) -> None:
        for store in (self._text_store, self._audio_store, *self._other_stores):
            if store is not None:
                store.close()
        self._text_store = self._audio_store = None
        self._other_stores = []

    def __enter__(self) -> "Retriever":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunks(text: str, cfg: ChunkingConfig) -> list[str]:
    from stepvoice.retrieval.ingest import chunk_text

    return chunk_text(text, cfg.size, cfg.overlap)


def _hit(row, score: float) -> Hit:
    return Hit(row.id, row.kind, row.source, row.text, score, row.path)
