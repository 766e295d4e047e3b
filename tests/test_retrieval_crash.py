"""Crash safety and concurrency: kill -9 in the middle of big ingests, and two ingesting processes at once.

A cheap hashing embedder keeps these fast: they test the store, not embeddings.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from stepvoice.retrieval import Retriever
from stepvoice.retrieval.ingest import ChunkingConfig

INGEST = (
    "import sys\n"
    "from stepvoice.retrieval import Retriever\n"
    "from stepvoice.retrieval.ingest import ChunkingConfig\n"
    "r = Retriever.open(sys.argv[1], text_embedder='hash', chunking=ChunkingConfig(size=120, overlap=20))\n"
    "report = r.add_paths(sys.argv[2:])\n"
    "r.close()\n"
    "print(len(report.added), report.items)\n"
)
CHUNKS_PER_FILE = 3
N_FILES = 1000


def make_corpus(folder, n_files, tag):
    folder.mkdir(parents=True)
    for i in range(n_files):
        # three ~100-char sentences -> three chunks of size 120
        body = " ".join(f"{tag} file {i} sentence {j} " + "lorem ipsum dolor sit amet " * 3 + "end." for j in range(CHUNKS_PER_FILE))
        (folder / f"{tag}_{i:04d}.txt").write_text(body)
    return folder


def spawn(data, *paths):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", INGEST, str(data), *map(str, paths)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def rows(data):
    db = data / "index" / "text.sqlite"
    if not db.exists():
        return []
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return con.execute("SELECT source, hash, text FROM items").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def check_consistent(data, expected_per_source=CHUNKS_PER_FILE):
    """Store opens, integrity ok, FAISS == SQLite, no duplicates, every stored file complete."""
    con = sqlite3.connect(str(data / "index" / "text.sqlite"))
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    all_rows = rows(data)
    assert len({h for _, h, _ in all_rows}) == len(all_rows)
    assert len({(s, t) for s, _, t in all_rows}) == len(all_rows)
    per_source = {}
    for s, _, _ in all_rows:
        per_source[s] = per_source.get(s, 0) + 1
    assert set(per_source.values()) <= {expected_per_source}, "a file was stored half"
    with Retriever.open(data, text_embedder="hash", chunking=ChunkingConfig(size=120, overlap=20)) as r:
        store = r.text_store
        assert store._index.ntotal == store.count() == len(all_rows)
        if all_rows:
            hit = r.search(all_rows[0][2], k=1)[0]
            assert hit.text == all_rows[0][2]
    return {s for s, _, _ in all_rows}


def test_kill_9_during_ingest_loses_nothing_committed(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", N_FILES, "doc")
    data = tmp_path / "data"
    rng = random.Random(1234)
    committed: set[str] = set()
    kills = 0
    for attempt in range(12):
        before = len(rows(data))
        proc = spawn(data, corpus)
        deadline = time.monotonic() + 60
        while len(rows(data)) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until it is writing
        time.sleep(rng.uniform(0.0, 0.06))  # a random point of the write phase
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        stored = check_consistent(data)
        assert committed <= stored, "a committed file was lost"
        committed = stored
        if len(committed) == N_FILES:
            break
    assert kills >= 10
    # one uninterrupted run finishes the job: every file once, nothing duplicated
    proc = spawn(data, corpus)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert check_consistent(data) == {str(p.resolve()) for p in corpus.iterdir()}
    assert len(rows(data)) == N_FILES * CHUNKS_PER_FILE


def test_two_processes_ingesting_at_once(tmp_path):
    a = make_corpus(tmp_path / "a", 150, "alpha")
    b = make_corpus(tmp_path / "b", 150, "beta")
    shared = make_corpus(tmp_path / "shared", 30, "both")  # given to both: stored once
    data = tmp_path / "data"
    procs = [spawn(data, a, shared), spawn(data, b, shared)]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    added = [int(out.split()[0]) for out, _ in results]
    assert sum(added) == 330  # each shared file was added by exactly one of them
    stored = check_consistent(data)
    assert len(stored) == 330 and len(rows(data)) == 330 * CHUNKS_PER_FILE


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_crash_points_inside_one_write(tmp_path, point, monkeypatch):
    """An exception at either side of the SQLite commit leaves old-or-new, and the next open agrees."""
    import numpy as np

    from stepvoice.retrieval.store import NewItem, Store

    s = Store(tmp_path / "s", 8, "e")
    v = np.eye(8, dtype=np.float32)
    s.add([NewItem("text", "a", "h0", "t0")], v[:1])
    s.close()

    s = Store(tmp_path / "s", 8, "e")
    if point == "before-commit":
        orig = s._db

        class Boom:
            def execute(self, sql, *args):
                if sql.startswith("UPDATE meta SET value"):
                    raise RuntimeError("power cut")
                return orig.execute(sql, *args)

            def executemany(self, *args):
                return orig.executemany(*args)

        s._db = Boom()
        with pytest.raises(RuntimeError):
            s.add([NewItem("text", "b", "h1", "t1")], v[1:2])
        s._db = orig
        expected = ["t0"]
    else:
        monkeypatch.setattr(s._index, "add_with_ids", lambda *a: (_ for _ in ()).throw(RuntimeError("power cut")))
        with pytest.raises(RuntimeError):
            s.add([NewItem("text", "b", "h1", "t1")], v[1:2])
        expected = ["t0", "t1"]
    s._db.close()
    s._db = None
    with Store(tmp_path / "s", 8, "e") as again:
        assert sorted(r.text for r in again.rows_where()) == expected
        assert again._index.ntotal == len(expected)
