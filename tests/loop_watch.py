"""Nothing heavy on the event loop: a test fails when one of the product's callbacks
(a task step of code under engine/, tools/, retrieval/, voice_bank/, assistant/)
kept its loop busy for 100 ms or more.

"Busy" is the loop thread's own CPU time during the callback, not wall time: on a
loaded 2-core machine a step doing 1 ms of work can wait 100 ms for the CPU or the
GIL, and that is not the product's fault. Sleeping or blocking I/O uses no CPU, so
a wall-time backstop (1 s) catches those. End-to-end lag under real load is
measured separately (tests/test_server_loop_lag.py pings a running server).
Time the loop thread spends in the garbage collector during a step is not counted:
a full collection of the test process's heap (hundreds of tests' objects; 0.5 s and
more late in a run) can start in any allocation, and `serve`/`chat` freeze their
start-up heap for that reason (assistant.loop_ready). Every loop also runs in asyncio
debug mode (thread-safety checks, never-awaited coroutines with their origin). Tasks of the tests' own coroutines are not judged:
a test may do slow set-up inline.

Loaded from conftest.py. `STEPVOICE_LOOP_WATCH=0` turns it off (e.g. to profile).
"""
from __future__ import annotations

import asyncio
import gc
import os
import re
import threading
import time
from pathlib import Path

import pytest

BUSY_CPU_S = 0.1
BLOCKED_WALL_S = 1.0
ROOT = Path(__file__).resolve().parent.parent
PRODUCT = tuple(str(ROOT / d) + os.sep for d in ("engine", "tools", "retrieval", "voice_bank", "assistant"))
_AT_FILE = re.compile(r"\bat (/\S+?):\d+")


class _WatchedPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = BLOCKED_WALL_S  # asyncio's own warning: only the backstop's cases
        return loop


def describe(handle: asyncio.Handle) -> str:
    """The task a step belongs to (its coroutine and where it runs), else the callback."""
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return repr(owner)
    return repr(handle)


class _Watch:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[str] = []
        self._run = asyncio.events.Handle._run
        self._gc = threading.local()  # per thread: CPU and wall seconds spent collecting, and the current start

    def _gc_spent(self) -> tuple[float, float]:
        return getattr(self._gc, "cpu", 0.0), getattr(self._gc, "wall", 0.0)

    def _on_gc(self, phase: str, info: dict) -> None:
        g = self._gc
        if phase == "start":
            g.start = (time.thread_time(), time.perf_counter())
        elif getattr(g, "start", None) is not None:
            cpu0, wall0 = g.start
            g.start = None
            g.cpu = getattr(g, "cpu", 0.0) + time.thread_time() - cpu0
            g.wall = getattr(g, "wall", 0.0) + time.perf_counter() - wall0

    def install(self) -> None:
        watch, run = self, self._run
        gc.callbacks.append(self._on_gc)

        def timed_run(handle: asyncio.Handle) -> None:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            gc_cpu0, gc_wall0 = watch._gc_spent()
            try:
                run(handle)
            finally:
                gc_cpu, gc_wall = watch._gc_spent()
                cpu = time.thread_time() - cpu0 - (gc_cpu - gc_cpu0)
                wall = time.perf_counter() - wall0 - (gc_wall - gc_wall0)
                if cpu >= BUSY_CPU_S or wall >= BLOCKED_WALL_S:
                    watch.judge(handle, cpu, wall)

        asyncio.events.Handle._run = timed_run

    def judge(self, handle: asyncio.Handle, cpu: float, wall: float) -> None:
        text = describe(handle)
        files = _AT_FILE.findall(text)
        # the outermost coroutine of the step decides: product code, or a test's own coroutine
        if files and files[0].startswith(PRODUCT):
            with self.lock:
                self.seen.append(f"{text[:400]} kept the loop busy {cpu * 1000:.0f} ms CPU ({wall * 1000:.0f} ms wall)")


_watch = _Watch()


def pytest_configure(config) -> None:
    if os.environ.get("STEPVOICE_LOOP_WATCH", "1") == "0":
        return
    asyncio.set_event_loop_policy(_WatchedPolicy())
    _watch.install()


@pytest.fixture(autouse=True)
def _no_slow_product_callbacks():
    with _watch.lock:
        _watch.seen.clear()
    yield
    with _watch.lock:
        seen, _watch.seen[:] = list(_watch.seen), []
    if seen:
        pytest.fail(f"the event loop was blocked by product code (>= {BUSY_CPU_S * 1000:.0f} ms CPU "
                    f"or >= {BLOCKED_WALL_S:.0f} s wall in one step):\n" + "\n".join(seen), pytrace=False)
