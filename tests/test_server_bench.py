"""The short variant of bench/serve_load.py: 5 sessions x 5 s against the real server."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def test_short_load_has_no_errors_and_reports_latency_and_memory():
    spec = importlib.util.spec_from_file_location("serve_load", Path(__file__).parents[1] / "bench" / "serve_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.run(sessions=5, seconds=5, pause=0.5, codes=25)
    assert r["errors"] == 0, r["error_examples"]
    assert r["turns"] >= 5 and r["audio_out_s"] >= r["turns"] * 0.99  # every turn got its 1 s of speech
    assert 0 < r["first_audio_p50_ms"] <= r["first_audio_p99_ms"]
    assert 0 < r["rss_start_mb"] <= r["rss_peak_mb"] and r["rss_end_mb"] > 0
