"""What a vector store holds: its SQLite schema, the rows going in and coming out, its
settings and its errors (the store itself: store.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

from stepvoice.engine.errors import StepvoiceError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so FAISS ids stay unique
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    path TEXT,
    hash TEXT NOT NULL UNIQUE,
    source_hash TEXT,
    added REAL NOT NULL,
    gen INTEGER NOT NULL,
    vector BLOB NOT NULL,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS items_source ON items (source);
CREATE INDEX IF NOT EXISTS items_kind ON items (kind);
CREATE INDEX IF NOT EXISTS items_gen ON items (gen);
CREATE TABLE IF NOT EXISTS removed (id INTEGER PRIMARY KEY, gen INTEGER NOT NULL);
"""


class StoreBusy(StepvoiceError):
    """Another process holds the store's write lock for longer than we wait."""


class StoreError(StepvoiceError):
    """A store file that cannot be opened or used."""


@dataclass
class StoreConfig:
    approx_threshold: int = 50_000  # rows above which the index is IVF instead of exact
    nprobe: int = 48  # IVF lists visited per query (recall vs speed)
    lock_timeout_s: float = 120.0
    retrain_factor: float = 4.0  # retrain IVF when rows grow past this multiple of the trained size


@dataclass
class NewItem:
    """One row to add: what it is, where it came from, what to show, and its content hash."""

    kind: str
    source: str
    hash: str
    text: str = ""
    path: str | None = None
    source_hash: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    id: int
    kind: str
    source: str
    text: str
    path: str | None
    hash: str
    source_hash: str | None
    added: float
    extra: dict
