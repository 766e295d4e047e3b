"""Retrieval quality on a labelled bilingual set (tests/retrieval_corpus.py): 107 passages, 40 queries.

Thresholds, and why:
- recall@5 >= 0.85 overall: the session puts the top 5 chunks into the
  prompt, so below that roughly one question in seven would be answered
  without its source. The default embedder (multilingual-e5-small) measured
  0.925 here; same-language queries measured 1.0 and must stay >= 0.95.
- cross-lingual (zh->en, en->zh) recall@5 >= 0.5, and strictly better than
  English-only MiniLM: this is the reason e5 is the default (the model sends
  Chinese descriptions, users ask in both languages). e5 measured 0.625,
  MiniLM 0.25.
"""
from __future__ import annotations

import numpy as np
import pytest

from stepvoice.retrieval import Retriever
from stepvoice.retrieval.text_embedder import load_text_embedder
from retrieval_corpus import PASSAGES, QUERIES


def _is_zh(s: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in s)


def groups():
    same, cross = [], []
    for i, (q, gold) in enumerate(QUERIES):
        (same if _is_zh(q) == _is_zh(PASSAGES[gold]) else cross).append(i)
    return same, cross


def test_labelled_set_is_big_enough():
    same, cross = groups()
    assert len(PASSAGES) >= 100 and len(QUERIES) >= 30
    assert sum(_is_zh(p) for p in PASSAGES.values()) >= 40 and sum(_is_zh(q) for q, _ in QUERIES) >= 10
    assert len(cross) >= 8 and all(g in PASSAGES for _, g in QUERIES)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """The corpus, one file per passage, ingested through the real pipeline with the default embedder."""
    root = tmp_path_factory.mktemp("corpus")
    docs = root / "docs"
    docs.mkdir()
    for pid, text in PASSAGES.items():
        (docs / f"{pid}.txt").write_text(text, encoding="utf-8")
    r = Retriever.open(root / "data")
    report = r.add_paths([docs])
    assert report.items == len(PASSAGES)
    yield r
    r.close()


def recall_at_5(hit_lists) -> list[bool]:
    return [any(h.source.endswith(f"/{gold}.txt") for h in hits) for hits, (_, gold) in zip(hit_lists, QUERIES)]


def test_recall_at_5_default_embedder(indexed):
    found = recall_at_5([indexed.search(q, k=5) for q, _ in QUERIES])
    same, cross = groups()
    overall = float(np.mean(found))
    same_r = float(np.mean([found[i] for i in same]))
    cross_r = float(np.mean([found[i] for i in cross]))
    print(f"\nrecall@5 (e5, default): overall {overall:.3f}, same-language {same_r:.3f}, cross-lingual {cross_r:.3f}")
    assert overall >= 0.85
    assert same_r >= 0.95
    assert cross_r >= 0.5


def test_default_beats_english_only_model_across_languages(indexed):
    """Same passages and queries: e5 (default, vectors as stored) vs all-MiniLM-L6-v2 on cross-lingual queries."""
    ids = list(PASSAGES)
    _, cross = groups()
    stored = {r.source.rsplit("/", 1)[1][:-4]: r.id for r in indexed.text_store.rows_where()}
    e5_passages = np.stack([indexed.text_store.vector(stored[i]) for i in ids])

    def cross_recall(embedder, passages):
        q = embedder.embed([QUERIES[i][0] for i in cross], query=True)
        top = np.argsort(-(q @ passages.T), axis=1)[:, :5]
        return float(np.mean([ids.index(QUERIES[i][1]) in top[n] for n, i in enumerate(cross)]))

    minilm = load_text_embedder("minilm")
    e5_r = cross_recall(indexed.text_embedder, e5_passages)
    minilm_r = cross_recall(minilm, minilm.embed([PASSAGES[i] for i in ids]))
    print(f"\ncross-lingual recall@5: e5 {e5_r:.3f}, MiniLM {minilm_r:.3f}")
    assert e5_r > minilm_r


def test_persistence_across_processes(indexed):
    """A new process opening the same data dir returns the same hits and scores."""
    import json
    import subprocess
    import sys

    queries = [q for q, _ in QUERIES[:6]]
    here = [[(h.id, round(h.score, 4)) for h in indexed.search(q, k=5)] for q in queries]
    indexed.text_store.save()
    code = (
        "import json,sys; from retrieval import Retriever\n"
        "r = Retriever.open(sys.argv[1])\n"
        "print(json.dumps([[(h.id, round(h.score, 4)) for h in r.search(q, k=5)] for q in json.loads(sys.argv[2])]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(indexed.data_dir), json.dumps(queries)],
                         capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    there = json.loads(out.stdout)
    assert [[tuple(x) for x in row] for row in there] == here
