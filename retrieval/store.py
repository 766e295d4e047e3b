"""A vector store: SQLite holds the truth (rows + vectors), a FAISS index is a cache of it.

Files for a store named PREFIX (e.g. DATA/index/text):
  PREFIX.sqlite                     rows: id, kind, source, text, path, hash, vector, gen
  PREFIX.<uuid>.g<GEN>.faiss        the FAISS index as of generation GEN (temp file + rename)
  PREFIX.lock                       file lock held while writing

Every write is one SQLite transaction that bumps the store's generation;
rows remember the generation that added them and removals are logged, so a
FAISS index of an older generation (another process wrote, or we crashed
before saving) is brought up to date incrementally, and rebuilt from the
stored vectors (no re-embedding) when it is missing, unreadable or its size
disagrees with SQLite. Exact search (IndexFlatIP) below `approx_threshold`
rows, IVF-Flat above it: both take add/remove by id without a rebuild.
The schema, the row types and the errors live in store_rows.py.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import faiss
import numpy as np
from filelock import FileLock, Timeout

from stepvoice.engine.errors import ConfigError
from stepvoice.retrieval.faiss_index import build_index, is_approximate
from stepvoice.retrieval.store_rows import SCHEMA, NewItem, Row, StoreBusy, StoreConfig, StoreError

__all__ = ["NewItem", "Row", "Store", "StoreBusy", "StoreConfig", "StoreError"]  # store_rows' types, re-exported

log = logging.getLogger(__name__)

class Store:
    """One vector space (one embedder): rows in SQLite, vectors in FAISS. See module doc."""

    def __init__(self, prefix: str | os.PathLike, dim: int, embedder: str, config: StoreConfig | None = None) -> None:
        self.prefix = Path(prefix)
        self.dim = int(dim)
        self.embedder = embedder
        self.config = config or StoreConfig()
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.db_path = self.prefix.with_name(self.prefix.name + ".sqlite")
        self._lock = FileLock(str(self.prefix.with_name(self.prefix.name + ".lock")))
        self._mutex = threading.RLock()  # one connection shared by this object's threads
        try:
            self._db = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False, timeout=60)
            # Switching to WAL needs the database to itself and SQLite does not wait for
            # that (no busy handler): do it under the writers' lock, where no other
            # process is writing.
            self._lock.acquire(timeout=self.config.lock_timeout_s)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
            finally:
                self._lock.release()
            self._db.execute("PRAGMA synchronous=NORMAL")
        except Timeout:
            raise StoreBusy(f"index {self.prefix} is locked by another stepvoice process "
                            f"(waited {self.config.lock_timeout_s:.0f} s); try again when it finishes") from None
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open index database {self.db_path}: {e}") from e
        self._index: faiss.Index | None = None
        self._gen = -1  # generation the in-memory index reflects
        self._verified_gen = -1  # generation whose row count was checked against the index
        self._saved_gen = -1
        self._trained_n = 0
        self._init_schema()
        self._load_index()

    # ----- schema and meta -------------------------------------------------------------
    def _init_schema(self) -> None:
        with self._writing():
            try:
                self._db.executescript(SCHEMA)
            except sqlite3.DatabaseError as e:
                raise StoreError(f"index database {self.db_path} is unreadable: {e}") from e
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                self._db.execute("BEGIN IMMEDIATE")
                for k, v in {"dim": self.dim, "embedder": self.embedder, "generation": 0, "uuid": uuid.uuid4().hex[:12]}.items():
                    self._db.execute("INSERT INTO meta VALUES (?, ?)", (k, str(v)))
                self._db.execute("COMMIT")
                meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if int(meta["dim"]) != self.dim or meta["embedder"] != self.embedder:
            raise ConfigError(
                f"index {self.prefix} was built with embedder {meta['embedder']} ({meta['dim']}-d), "
                f"not {self.embedder} ({self.dim}-d): use the same embedder or another data dir"
            )
        self.uuid = meta["uuid"]

    def generation(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def count(self, kind: str | None = None) -> int:
        with self._mutex:
            if kind is None:
                return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM items WHERE kind=?", (kind,)).fetchone()[0])

    # ----- locking ---------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold this object's mutex and the cross-process file lock."""
        with self._mutex:
            try:
                self._lock.acquire(timeout=self.config.lock_timeout_s)
            except Timeout:
                raise StoreBusy(
                    f"index {self.prefix} is locked by another stepvoice process "
                    f"(waited {self.config.lock_timeout_s:.0f} s); try again when it finishes"
                ) from None
            try:
                yield
            finally:
                self._lock.release()

    # ----- the FAISS cache -------------------------------------------------------------
    def _index_files(self) -> list[tuple[int, Path]]:
        stem = f"{self.prefix.name}.{self.uuid}.g"
        found = []
        for p in self.prefix.parent.glob(f"{self.prefix.name}.{self.uuid}.g*.faiss"):
            g = p.name[len(stem) : -len(".faiss")]
            if g.isdigit():
                found.append((int(g), p))
        return sorted(found)

    def _load_index(self) -> None:
        with self._mutex:
            gen = self.generation()
            for g, path in reversed(self._index_files()):
                if g > gen:
                    continue
                try:
                    index = faiss.read_index(str(path))
                except Exception as e:  # truncated or corrupt: fall back to a rebuild
                    log.warning("ignoring unreadable index file %s: %s", path, e)
                    continue
                if index.d != self.dim:
                    continue
                self._index, self._gen, self._saved_gen = index, g, g
                self._trained_n = index.ntotal
                break
            self._sync()

    def rebuild(self) -> None:
        """Rebuild the in-memory FAISS index from the vectors stored in SQLite."""
        with self._mutex:
            gen = self.generation()
            rows = self._db.execute("SELECT id, vector FROM items ORDER BY id").fetchall()
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, self.dim)
            self._index = build_index(
                self.dim, vecs, ids, approximate=len(rows) > self.config.approx_threshold, nprobe=self.config.nprobe
            )
            self._trained_n = len(rows)
            self._gen = self._verified_gen = gen
            log.info("rebuilt index %s from %d stored vectors", self.prefix, len(rows))

    def _sync(self) -> None:
        """Bring the in-memory index up to the committed generation (other writers, crashes)."""
        with self._mutex:
            gen = self.generation()
            if self._index is None:
                self.rebuild()
                return
            if gen == self._gen == self._verified_gen:
                return  # the common case, one indexed read per query (COUNT(*) is O(rows) in SQLite)
            if gen != self._gen:
                new = self._db.execute("SELECT id, vector FROM items WHERE gen > ? ORDER BY id", (self._gen,)).fetchall()
                gone = [r[0] for r in self._db.execute("SELECT id FROM removed WHERE gen > ?", (self._gen,))]
                if new:
                    ids = np.array([r[0] for r in new], dtype=np.int64)
                    self._index.remove_ids(ids)  # a row may already be there (index saved mid-way)
                    vecs = np.frombuffer(b"".join(r[1] for r in new), dtype=np.float32).reshape(-1, self.dim)
                    self._index.add_with_ids(vecs, ids)
                if gone:
                    self._index.remove_ids(np.array(gone, dtype=np.int64))
                self._gen = gen
            n = self.count()
            if self._index.ntotal != n or self._wants_other_kind(n):
                if self._index.ntotal != n:
                    log.warning("index %s has %d vectors, SQLite %d rows: rebuilding", self.prefix, self._index.ntotal, n)
                self.rebuild()
            self._verified_gen = self._gen

    def _wants_other_kind(self, n: int) -> bool:
        approx = is_approximate(self._index)
        if not approx:
            return n > self.config.approx_threshold
        return n <= self.config.approx_threshold // 2 or n > self.config.retrain_factor * max(self._trained_n, 1)

    def save(self) -> None:
        """Write the index for the current generation (temp file + rename) and drop older files."""
        with self._writing():
            self._sync()
            if self._saved_gen == self._gen and any(g == self._gen for g, _ in self._index_files()):
                return
            final = self.prefix.with_name(f"{self.prefix.name}.{self.uuid}.g{self._gen}.faiss")
            fd, tmp = tempfile.mkstemp(dir=self.prefix.parent, prefix=final.name, suffix=".tmp")
            os.close(fd)
            try:
                faiss.write_index(self._index, tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            self._saved_gen = self._gen
            for g, p in self._index_files():
                if g != self._gen:
                    p.unlink(missing_ok=True)
            for stale in self.prefix.parent.glob(f"{self.prefix.name}.*.tmp"):
                stale.unlink(missing_ok=True)  # left by a crash mid-write

    # ----- writes ----------------------------------------------------------------------
    def add(self, items: Sequence[NewItem], vectors: np.ndarray, *, replace_source: str | None = None,
            unless_source_hash: str | None = None) -> list[int] | None:
        """Add rows in one transaction; rows whose hash is already stored are skipped.

        With `replace_source`, that source's old rows are removed in the same
        transaction (a changed file is updated, never half-updated).
        Returns the ids of the rows actually added, or None when `replace_source`
        already holds `unless_source_hash` (checked under the lock, so two
        processes adding the same file store it once and only one reports it).
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim) if len(items) else np.zeros((0, self.dim), np.float32)
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        if not np.isfinite(vectors).all():
            raise StoreError("embedding produced NaN or infinite values; nothing was added")
        with self._writing():
            self._sync()
            if unless_source_hash is not None and replace_source is not None \
                    and self.source_hash(replace_source) == unless_source_hash:
                return None
            gen = self.generation() + 1
            now = time.time()
            added: list[tuple[int, int]] = []  # (row id, position in items)
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                removed: list[int] = []
                if replace_source is not None:
                    removed = [r[0] for r in db.execute("SELECT id FROM items WHERE source=?", (replace_source,))]
                    db.execute("DELETE FROM items WHERE source=?", (replace_source,))
                    db.executemany("INSERT OR REPLACE INTO removed VALUES (?, ?)", [(i, gen) for i in removed])
                for pos, (item, vec) in enumerate(zip(items, vectors)):
                    cur = db.execute(
                        "INSERT OR IGNORE INTO items (kind, source, text, path, hash, source_hash, added, gen, vector, extra)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (item.kind, item.source, item.text, item.path, item.hash, item.source_hash, now, gen,
                         vec.tobytes(), json.dumps(item.extra, ensure_ascii=False) if item.extra else None),
                    )
                    if cur.rowcount == 1:
                        added.append((int(cur.lastrowid), pos))
                db.execute("UPDATE meta SET value=? WHERE key='generation'", (str(gen),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if removed:
                self._index.remove_ids(np.array(removed, dtype=np.int64))
            if added:
                rows_idx = np.array([k for _, k in added], dtype=np.int64)
                self._index.add_with_ids(vectors[rows_idx], np.array([i for i, _ in added], dtype=np.int64))
            self._gen = gen
            if self._wants_other_kind(self._index.ntotal):
                self.rebuild()
            return [i for i, _ in added]

    def remove(self, *, source: str | None = None, ids: Iterable[int] = ()) -> int:
        """Remove a source's rows and/or rows by id; returns how many went."""
        ids = [int(i) for i in ids]
        with self._writing():
            self._sync()
            gen = self.generation() + 1
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                gone = list(ids)
                if source is not None:
                    gone += [r[0] for r in db.execute("SELECT id FROM items WHERE source=?", (source,))]
                gone = sorted(set(gone))
                present = [r[0] for r in db.execute(
                    f"SELECT id FROM items WHERE id IN ({','.join('?' * len(gone))})", gone)] if gone else []
                db.executemany("DELETE FROM items WHERE id=?", [(i,) for i in present])
                db.executemany("INSERT OR REPLACE INTO removed VALUES (?, ?)", [(i, gen) for i in present])
                if present:
                    db.execute("UPDATE meta SET value=? WHERE key='generation'", (str(gen),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if present:
                self._index.remove_ids(np.array(present, dtype=np.int64))
                self._gen = gen
            return len(present)

    # ----- reads -----------------------------------------------------------------------
    def has_hash(self, hash_: str) -> bool:
        with self._mutex:
            return self._db.execute("SELECT 1 FROM items WHERE hash=?", (hash_,)).fetchone() is not None

    def source_hash(self, source: str) -> str | None:
        """The content hash recorded for a source (None if the source is not stored)."""
        with self._mutex:
            r = self._db.execute("SELECT source_hash FROM items WHERE source=? LIMIT 1", (source,)).fetchone()
            return r[0] if r else None

    def sources(self) -> list[dict]:
        """One entry per source: source, kind, rows, first added time."""
        with self._mutex:
            q = "SELECT source, kind, COUNT(*), MIN(added) FROM items GROUP BY source, kind ORDER BY MIN(added), source"
            return [{"source": s, "kind": k, "items": n, "added": t} for s, k, n, t in self._db.execute(q)]

    def rows(self, ids: Sequence[int]) -> dict[int, Row]:
        with self._mutex:
            if not ids:
                return {}
            q = f"SELECT id, kind, source, text, path, hash, source_hash, added, extra FROM items WHERE id IN ({','.join('?' * len(ids))})"
            return {r[0]: Row(*r[:8], json.loads(r[8]) if r[8] else {}) for r in self._db.execute(q, [int(i) for i in ids])}

    def rows_where(self, *, kind: str | None = None, source: str | None = None) -> list[Row]:
        where, args = _filters(kind, source)
        with self._mutex:
            q = f"SELECT id, kind, source, text, path, hash, source_hash, added, extra FROM items{where} ORDER BY id"
            return [Row(*r[:8], json.loads(r[8]) if r[8] else {}) for r in self._db.execute(q, args)]

    def vector(self, id_: int) -> np.ndarray | None:
        with self._mutex:
            r = self._db.execute("SELECT vector FROM items WHERE id=?", (int(id_),)).fetchone()
            return np.frombuffer(r[0], dtype=np.float32).copy() if r else None

    def search(self, vector: np.ndarray, k: int = 5, *, kind: str | None = None, source: str | None = None) -> list[tuple[Row, float]]:
        """Top-k rows by inner product (cosine for unit vectors), optionally only of one kind/source."""
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        with self._mutex:
            self._sync()
            if self._index.ntotal == 0 or k <= 0:
                return []
            params = None
            if kind is not None or source is not None:
                where, args = _filters(kind, source)
                allowed = np.array([r[0] for r in self._db.execute(f"SELECT id FROM items{where}", args)], dtype=np.int64)
                if not len(allowed):
                    return []
                sel = faiss.IDSelectorBatch(allowed)
                params = (faiss.SearchParametersIVF(sel=sel, nprobe=self.config.nprobe) if is_approximate(self._index)
                          else faiss.SearchParameters(sel=sel))
            elif is_approximate(self._index):
                params = faiss.SearchParametersIVF(nprobe=self.config.nprobe)
            scores, ids = self._index.search(vector, min(k, self._index.ntotal), params=params)
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
            rows = self.rows([i for i, _ in found])
            return [(rows[i], s) for i, s in found if i in rows]

    def close(self) -> None:
        """Save the index if it moved on, and close the database."""
        if self._db is None:
            return
        try:
            if self._gen != self._saved_gen:
                self.save()
        except StoreBusy:
            log.info("index %s not saved (busy); it will be brought up to date on next open", self.prefix)
        finally:
            self._db.close()
            self._db = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _filters(kind: str | None, source: str | None) -> tuple[str, list]:
    clauses, args = [], []
    if kind is not None:
        clauses.append("kind=?")
        args.append(kind)
    if source is not None:
        clauses.append("source=?")
        args.append(source)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
