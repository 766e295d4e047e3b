"""The threads that run sync tools: their own bounded pool, apart from asyncio's default one.

Model steps and token2wav run in the loop's default executor (`asyncio.to_thread`).
A sync tool that never returns cannot be stopped (Python threads cannot be
killed), so if tools shared that executor, a few stuck tools would queue every
model step behind them. Here they get `max_threads` threads of their own; when
all of them are held by calls still running, a new call is refused at once
("busy") instead of waiting in a queue.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

DEFAULT_THREADS = 8


class ToolPoolBusy(Exception):
    """Every tool thread is held by a call that is still running."""


class ToolPool:
    def __init__(self, max_threads: int = DEFAULT_THREADS):
        if max_threads < 1:
            raise ValueError("a tool pool needs at least one thread")
        self.max_threads = max_threads
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="stepvoice-tool")
        self._lock = threading.Lock()
        self._running = 0  # calls whose thread has not returned (timed-out ones included)

    @property
    def running(self) -> int:
        return self._running

    async def run(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """`fn(**kwargs)` in a tool thread. Cancelling the caller leaves the thread to finish; its result is dropped."""
        with self._lock:
            if self._running >= self.max_threads:
                raise ToolPoolBusy(f"all {self.max_threads} tool threads are busy with calls still running")
            self._running += 1
        ctx = contextvars.copy_context()
        try:
            future = self._executor.submit(ctx.run, functools.partial(fn, **kwargs))
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _f: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._running -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_shared: ToolPool | None = None
_shared_lock = threading.Lock()


def shared_pool(max_threads: int = DEFAULT_THREADS) -> ToolPool:
    """The process's tool pool (made on first use with `max_threads`), for contexts that bring none."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ToolPool(max_threads)
        return _shared


__all__ = ["ToolPool", "ToolPoolBusy", "shared_pool", "DEFAULT_THREADS"]
