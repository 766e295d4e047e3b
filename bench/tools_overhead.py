"""What the tool runner costs on top of the tool itself, and what concurrency buys, side by side.

    .venv/bin/python bench/tools_overhead.py [--calls 2000] [--io-ms 50] [--parallel 4]

(a) per-call overhead: calling an async tool function directly vs through
    `tools.run` (lookup, pydantic validation, timeout, rendering,
    neutralising, capping); printed in microseconds and as a ratio.
(b) `run_many` of N calls that each wait `--io-ms` (like an HTTP request) vs
    running them one after another; printed as a speed-up ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import time

from stepvoice.engine.events import ToolCall
from stepvoice.tools import ToolContext, ToolRegistry, run, run_many, tool


@tool
async def add(a: int, b: int) -> dict:
    """Add two integers."""
    return {"sum": a + b, "note": "<|EOT|> stays text"}


@tool
async def wait_io(ms: float) -> str:
    """Wait like a network request."""
    await asyncio.sleep(ms / 1000)
    return "ok"


async def main(calls: int, io_ms: float, parallel: int) -> None:
    reg = ToolRegistry()
    reg.add(add)
    reg.add(wait_io)
    ctx = ToolContext()

    t0 = time.perf_counter()
    for i in range(calls):
        await add.fn(a=i, b=1)
    direct = (time.perf_counter() - t0) / calls

    t0 = time.perf_counter()
    for i in range(calls):
        r = await run(ToolCall("add", {"a": i, "b": 1}), ctx, reg)
        assert r.ok
    through = (time.perf_counter() - t0) / calls
    print(f"(a) direct call {direct * 1e6:8.1f} us | through run() {through * 1e6:8.1f} us | "
          f"overhead {(through - direct) * 1e6:.1f} us per call (ratio {through / direct:.0f}x of an empty tool)")

    batch = [ToolCall("wait_io", {"ms": io_ms}) for _ in range(parallel)]
    t0 = time.perf_counter()
    for c in batch:
        await run(c, ctx, reg)
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    await run_many(batch, ctx, reg)
    concurrent = time.perf_counter() - t0
    print(f"(b) {parallel} calls of {io_ms:g} ms: one by one {sequential * 1e3:.0f} ms | run_many "
          f"{concurrent * 1e3:.0f} ms | speed-up {sequential / concurrent:.1f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--io-ms", type=float, default=50.0)
    ap.add_argument("--parallel", type=int, default=4)
    a = ap.parse_args()
    asyncio.run(main(a.calls, a.io_ms, a.parallel))
