"""Retrieval benchmarks, measured side by side in one run.

1. Index: clustered synthetic unit vectors (N x 384): exact (IndexFlatIP) vs
   approximate (the store's IVF-Flat) build time, single-query p50/p99, and
   recall@10 of the approximate index against the exact one.
2. Ingestion: chunks per second through Retriever.add_paths with the default
   text embedder (multilingual-e5-small).
3. Voice switch: VoiceBank.prompt(name) with a cached prompt (in memory, and
   from disk in a fresh bank), and find(description) + switch (timbre_rag's path).

Goals: 1M p50 <= 5 ms with recall@10 >= 0.95; switch <= 10 ms.
Usage: OMP_NUM_THREADS=2 python bench/retrieval.py [--sizes 100000,1000000] [--queries 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384


def clustered(n: int, dim: int, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around n_clusters random centres (spread like sentence embeddings), plus the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for i in range(0, n, step):
        m = min(step, n - i)
        x = centres[rng.integers(0, n_clusters, m)] + 0.06 * rng.standard_normal((m, dim)).astype(np.float32)
        out[i : i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, centres


def pct(ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(ms), q))


def bench_index(n: int, n_queries: int, nprobe: int) -> dict:
    import faiss

    from stepvoice.retrieval.faiss_index import build_index, nlist_for

    data, _ = clustered(n, DIM, n_clusters=max(100, n // 1000), seed=n)
    queries, _ = clustered(n_queries, DIM, n_clusters=max(100, n // 1000), seed=n)  # same centres (same seed)
    queries = queries + 0.02 * np.random.default_rng(1).standard_normal(queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)

    t = time.perf_counter()
    exact = build_index(DIM, data, ids, approximate=False)
    exact_build = time.perf_counter() - t
    t = time.perf_counter()
    approx = build_index(DIM, data, ids, approximate=True, nprobe=nprobe)
    approx_build = time.perf_counter() - t

    _, truth = exact.search(queries, 10)  # batched: ground truth
    lat_exact = []
    for q in queries[:50]:  # exact single queries are slow at 1M: 50 are enough for percentiles
        t = time.perf_counter()
        exact.search(q[None], 10)
        lat_exact.append((time.perf_counter() - t) * 1e3)
    sweep = {}
    for probes in sorted({8, 16, 32, nprobe}):
        params = faiss.SearchParametersIVF(nprobe=probes)
        lat, found = [], []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            _, got = approx.search(q[None], 10, params=params)
            lat.append((time.perf_counter() - t) * 1e3)
            found.append(len(set(got[0]) & set(truth[i])) / 10)
        sweep[probes] = (pct(lat, 50), pct(lat, 99), float(np.mean(found)))
    del data
    return {
        "n": n, "nlist": nlist_for(n), "nprobe": nprobe,
        "exact_build_s": exact_build, "approx_build_s": approx_build,
        "exact_p50_ms": pct(lat_exact, 50), "exact_p99_ms": pct(lat_exact, 99),
        "approx_p50_ms": sweep[nprobe][0], "approx_p99_ms": sweep[nprobe][1], "recall10": sweep[nprobe][2],
        "sweep": sweep,
    }


def bench_store(n: int, n_queries: int) -> dict:
    """The product path: Store.add in batches (SQLite + FAISS), then Store.search (sync check + rows)."""
    from stepvoice.retrieval.store import NewItem, Store

    data, _ = clustered(n, DIM, n_clusters=max(100, n // 1000), seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s", DIM, "bench")
        t = time.perf_counter()
        step = 10_000
        for i in range(0, n, step):
            items = [NewItem("text", f"src{j // 10}", f"h{j}", f"chunk {j}") for j in range(i, min(n, i + step))]
            store.add(items, data[i : i + step])
        add_s = time.perf_counter() - t
        lat = []
        for q in data[:n_queries]:
            t = time.perf_counter()
            store.search(q, 10)
            lat.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        store.close()
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        Store(Path(tmp) / "s", DIM, "bench").close()
        reopen_s = time.perf_counter() - t
    return {"n": n, "add_s": add_s, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "save_s": save_s,
            "reopen_s": reopen_s, "index": "IVF" if n > 50_000 else "exact"}


def bench_ingest(n_files: int, embedder: str | None = None) -> dict:
    from stepvoice.retrieval import Retriever

    words = ("river mountain coffee router battery passport bread garden violin market weather train "
             "北京 上海 天气 咖啡 路由器 火车 花园 市场").split()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for i in range(n_files):
            sentences = [" ".join(rng.choice(words, 14)) + "." for _ in range(40)]
            (docs / f"doc{i}.txt").write_text(" ".join(sentences), encoding="utf-8")
        r = Retriever.open(Path(tmp) / "data", text_embedder=embedder)
        r.text_embedder.embed(["warm up"])
        t = time.perf_counter()
        report = r.add_paths([docs], progress=False)
        elapsed = time.perf_counter() - t
        r.close()
        name = r.text_embedder.name
    return {"chunks": report.items, "seconds": elapsed, "chunks_per_s": report.items / elapsed, "embedder": name}


def bench_switch(rounds: int) -> dict:
    from stepvoice.engine.token2wav import VoicePrompt
    from stepvoice.voice_bank import VoiceBank

    def prepare(samples: np.ndarray) -> VoicePrompt:  # a 10 s prompt's real shapes: 250 codes, 500 x 80 mel
        rng = np.random.default_rng(len(samples))
        return VoicePrompt(rng.integers(0, 6561, 250), rng.standard_normal(192).astype(np.float32),
                           rng.standard_normal((500, 80)).astype(np.float32))

    with tempfile.TemporaryDirectory() as tmp:
        bank = VoiceBank.open(tmp, prepare=prepare)
        names = [v.name for v in bank.list()]
        for n in names:
            bank.prompt(n)  # prepared once, cached in memory and on disk
        memory = []
        for i in range(rounds):
            t = time.perf_counter()
            bank.prompt(names[i % len(names)])
            memory.append((time.perf_counter() - t) * 1e3)
        disk = []
        for i in range(min(rounds, 30)):
            fresh = VoiceBank.open(tmp, prepare=prepare, text_embedder=bank.index.text_embedder,
                                   speaker_embedder=bank.index.speaker_embedder)
            t = time.perf_counter()
            fresh.prompt(names[i % len(names)])
            disk.append((time.perf_counter() - t) * 1e3)
        bank.find("warm up")  # first lookup checks the bank's indexes against its folders
        lookups = []
        for i in range(min(rounds, 50)):
            query = ["低沉缓慢的声音", "a clear female news reader", "清晰的英语女声"][i % 3]
            t = time.perf_counter()
            bank.prompt(bank.find(query).name)
            lookups.append((time.perf_counter() - t) * 1e3)
        bank.close()
    return {"voices": len(names), "memory_p50_ms": pct(memory, 50), "memory_p99_ms": pct(memory, 99),
            "disk_p50_ms": pct(disk, 50), "disk_p99_ms": pct(disk, 99),
            "find_and_switch_p50_ms": pct(lookups, 50), "find_and_switch_p99_ms": pct(lookups, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", type=int, default=48, help="IVF lists visited per query (the store's default)")
    ap.add_argument("--ingest-files", type=int, default=20)
    ap.add_argument("--switch-rounds", type=int, default=300)
    ap.add_argument("--store-size", type=int, default=100_000, help="rows for the end-to-end Store benchmark")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: index,store,ingest,switch")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    if "switch" not in skip:
        s = bench_switch(args.switch_rounds)
        print(f"voice switch ({s['voices']} voices): cached in memory p50 {s['memory_p50_ms']:.4f} ms "
              f"p99 {s['memory_p99_ms']:.4f} ms; from disk p50 {s['disk_p50_ms']:.2f} ms p99 {s['disk_p99_ms']:.2f} ms; "
              f"find(description)+switch p50 {s['find_and_switch_p50_ms']:.1f} ms p99 {s['find_and_switch_p99_ms']:.1f} ms "
              f"(goal: switch <= 10 ms)", flush=True)
    if "ingest" not in skip:
        default = bench_ingest(args.ingest_files)
        english = bench_ingest(args.ingest_files, "minilm")  # the English-only alternative, same files
        for g in (default, english):
            print(f"ingestion ({g['embedder']}): {g['chunks']} chunks of <= 800 chars in {g['seconds']:.1f} s = "
                  f"{g['chunks_per_s']:.2f} chunks/s", flush=True)
        print(f"ingestion ratio default/MiniLM: {default['chunks_per_s'] / english['chunks_per_s']:.2f}x", flush=True)
    if "store" not in skip:
        st = bench_store(args.store_size, args.queries)
        print(f"store n={st['n']:,} ({st['index']}): add {st['add_s']:.1f} s in 10k batches, search p50 {st['p50_ms']:.2f} ms "
              f"p99 {st['p99_ms']:.2f} ms (FAISS + SQLite rows), save {st['save_s']:.1f} s, reopen {st['reopen_s']:.2f} s",
              flush=True)
    if "index" not in skip:
        for n in (int(x) for x in args.sizes.split(",")):
            r = bench_index(n, args.queries, args.nprobe)
            print(f"index n={r['n']:,} x {DIM}: build exact {r['exact_build_s']:.2f} s, IVF{r['nlist']} {r['approx_build_s']:.1f} s "
                  f"({r['approx_build_s'] / max(r['exact_build_s'], 1e-9):.0f}x); query p50/p99 exact "
                  f"{r['exact_p50_ms']:.2f}/{r['exact_p99_ms']:.2f} ms, IVF nprobe={r['nprobe']} "
                  f"{r['approx_p50_ms']:.2f}/{r['approx_p99_ms']:.2f} ms "
                  f"({r['exact_p50_ms'] / max(r['approx_p50_ms'], 1e-9):.1f}x faster); recall@10 {r['recall10']:.3f}",
                  flush=True)
            print("    nprobe sweep: " + "; ".join(f"{p}: p50 {a:.2f} ms p99 {b:.2f} ms recall@10 {c:.3f}"
                                                  for p, (a, b, c) in r["sweep"].items()), flush=True)


if __name__ == "__main__":
    main()
