"""The soak mode of bench/serve_load.py (`--turns`): every session runs its turns back to back and the
report carries the server's RSS after each tenth of the turns (the full run: 20 sessions x 300 turns)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def test_turns_mode_runs_every_turn_and_tabulates_rss():
    spec = importlib.util.spec_from_file_location("serve_load", Path(__file__).parents[1] / "bench" / "serve_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.run(sessions=3, pause=0.0, speech=False, turns=10)
    assert r["errors"] == 0, r["error_examples"]
    assert r["turns"] == 30 and r["turns_per_session"] == 10
    marks = [n for n, _ in r["rss_by_turns_mb"]]
    assert marks == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert all(mb > 0 for _, mb in r["rss_by_turns_mb"]) and r["last_third_growth"] is not None
