"""Store: add/dedupe/remove, persistence, index rebuilt from SQLite, IVF above the threshold, filters, lock."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from stepvoice.engine.errors import ConfigError
from stepvoice.retrieval.store import NewItem, Store, StoreBusy, StoreConfig


def unit(rng, n, d=16):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def items(n, start=0, per_source=10, kind="text"):
    return [NewItem(kind, f"src{(start + i) // per_source}", f"h{start + i}", text=f"t{start + i}") for i in range(n)]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_add_search_dedupe_remove(tmp_path, rng):
    v = unit(rng, 60)
    with Store(tmp_path / "s", 16, "e") as s:
        assert len(s.add(items(40), v[:40])) == 40
        assert len(s.add(items(60), v)) == 20  # first 40 hashes already stored
        assert s.count() == 60
        top = s.search(v[45], 3)
        assert top[0][0].text == "t45" and top[0][1] == pytest.approx(1.0, abs=1e-5)
        assert [r.source for r, _ in s.search(v[45], 5, source="src1")] == ["src1"] * 5
        assert s.search(v[45], 5, kind="audio") == []
        assert s.remove(source="src4") == 10
        assert all(r.text != "t45" for r, _ in s.search(v[45], 10))
        assert s.count() == 50


def test_replace_source_is_one_update(tmp_path, rng):
    v = unit(rng, 20)
    with Store(tmp_path / "s", 16, "e") as s:
        s.add(items(10), v[:10])
        new = [NewItem("text", "src0", f"new{i}", text=f"n{i}") for i in range(3)]
        s.add(new, v[10:13], replace_source="src0")
        assert sorted(r.text for r in s.rows_where(source="src0")) == ["n0", "n1", "n2"]
        assert s.search(v[0], 1)[0][0].text != "t0"


def test_persist_and_rebuild_from_sqlite(tmp_path, rng):
    v = unit(rng, 30)
    with Store(tmp_path / "s", 16, "e") as s:
        s.add(items(30), v)
        before = [(r.id, round(sc, 5)) for r, sc in s.search(v[7], 5)]
    faiss_files = list(tmp_path.glob("s.*.faiss"))
    assert len(faiss_files) == 1
    with Store(tmp_path / "s", 16, "e") as s:  # loads the saved index
        assert [(r.id, round(sc, 5)) for r, sc in s.search(v[7], 5)] == before
    faiss_files[0].write_bytes(b"garbage")  # corrupt cache: rebuilt from stored vectors
    with Store(tmp_path / "s", 16, "e") as s:
        assert [(r.id, round(sc, 5)) for r, sc in s.search(v[7], 5)] == before
    for f in tmp_path.glob("s.*.faiss"):
        f.unlink()
    with Store(tmp_path / "s", 16, "e") as s:
        assert [(r.id, round(sc, 5)) for r, sc in s.search(v[7], 5)] == before


def test_stale_index_file_is_brought_up_to_date(tmp_path, rng):
    v = unit(rng, 30)
    with Store(tmp_path / "s", 16, "e") as s:
        s.add(items(20), v[:20])
    # a writer that died before saving its index: rows are in SQLite, the .faiss file is older
    s2 = Store(tmp_path / "s", 16, "e")
    s2.add(items(10, start=20), v[20:])
    s2.remove(source="src0")
    s2._db.close()
    s2._db = None  # no close(): nothing saved
    with Store(tmp_path / "s", 16, "e") as s:
        assert s._index.ntotal == s.count() == 20
        assert s.search(v[25], 1)[0][0].text == "t25"
        assert all(r.source != "src0" for r, _ in s.search(v[3], 20))


def test_second_handle_sees_writes_of_first(tmp_path, rng):
    v = unit(rng, 20)
    a = Store(tmp_path / "s", 16, "e")
    b = Store(tmp_path / "s", 16, "e")
    a.add(items(20), v)
    assert b.search(v[13], 1)[0][0].text == "t13"
    a.remove(source="src1")
    assert b.search(v[13], 1)[0][0].text != "t13"
    a.close()
    b.close()


def test_ivf_above_threshold_and_back(tmp_path, rng):
    cfg = StoreConfig(approx_threshold=200, nprobe=64)
    v = unit(rng, 600, d=32)
    with Store(tmp_path / "s", 32, "e", cfg) as s:
        s.add(items(150, per_source=50), v[:150])
        assert "IVF" not in type(s._index).__name__
        s.add(items(450, start=150, per_source=50), v[150:])
        assert "IVF" in type(s._index).__name__
        hits = sum(s.search(v[i], 1)[0][0].text == f"t{i}" for i in range(0, 600, 7))
        assert hits / len(range(0, 600, 7)) > 0.9
        s.remove(source="src3")  # remove works on IVF too
        assert s._index.ntotal == 550
        assert s.search(v[160], 1)[0][0].text != "t160"
    with Store(tmp_path / "s", 32, "e", cfg) as s:
        assert "IVF" in type(s._index).__name__ and s._index.ntotal == 550


def test_embedder_mismatch_is_a_clear_error(tmp_path):
    Store(tmp_path / "s", 16, "e").close()
    with pytest.raises(ConfigError, match="built with embedder e"):
        Store(tmp_path / "s", 8, "other")


def test_nan_vectors_refused_and_store_untouched(tmp_path, rng):
    with Store(tmp_path / "s", 16, "e") as s:
        v = unit(rng, 3)
        v[1, 0] = np.nan
        with pytest.raises(Exception, match="NaN"):
            s.add(items(3), v)
        assert s.count() == 0


def test_lock_held_elsewhere_gives_busy(tmp_path, rng):
    from filelock import FileLock

    s = Store(tmp_path / "s", 16, "e", StoreConfig(lock_timeout_s=0.2))
    other = FileLock(str(tmp_path / "s.lock"))
    other.acquire()
    try:
        with pytest.raises(StoreBusy, match="locked by another"):
            s.add(items(1), unit(rng, 1))
    finally:
        other.release()
    assert len(s.add(items(1), unit(rng, 1))) == 1
    s.close()


def test_unreadable_database_is_a_clear_error(tmp_path):
    (tmp_path / "s.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(Exception, match="unreadable|cannot open"):
        Store(tmp_path / "s", 16, "e")
    with pytest.raises(sqlite3.DatabaseError):  # and it was left as it was, for the user to inspect
        sqlite3.connect(str(tmp_path / "s.sqlite")).execute("SELECT * FROM items")


@pytest.mark.slow
def test_real_size_ivf_store_recall(tmp_path):
    """200k clustered 384-d rows through the store (IVF above the default threshold) vs exact search."""
    from stepvoice.retrieval.faiss_index import build_index

    rng = np.random.default_rng(3)
    centres = unit(rng, 200, d=384)
    v = centres[rng.integers(0, 200, 200_000)] + 0.06 * rng.standard_normal((200_000, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    exact = build_index(384, v, np.arange(1, 200_001), approximate=False)  # store ids start at 1
    with Store(tmp_path / "s", 384, "e") as s:
        for i in range(0, len(v), 20_000):
            s.add(items(20_000, start=i, per_source=100), v[i : i + 20_000])
        assert "IVF" in type(s._index).__name__
        queries = v[rng.choice(len(v), 100, replace=False)] + 0.02 * rng.standard_normal((100, 384)).astype(np.float32)
        _, truth = exact.search(queries, 10)
        recall = np.mean([len({r.id for r, _ in s.search(q, 10)} & set(t)) / 10 for q, t in zip(queries, truth)])
    assert recall >= 0.95
