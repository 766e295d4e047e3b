"""Every event loop the tests create runs in asyncio debug mode with a 100 ms
slow-callback limit; a test fails when one of the product's callbacks (a task
step of code under engine/, tools/, retrieval/, voice_bank/, assistant/)
blocked its loop longer than that. Tasks of the tests' own coroutines are not
judged: a test may do slow set-up inline.

Loaded from conftest.py. `STEPVOICE_LOOP_WATCH=0` turns it off (e.g. to profile).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from pathlib import Path

import pytest

SLOW_CALLBACK_S = 0.1
ROOT = Path(__file__).resolve().parent.parent
PRODUCT = tuple(str(ROOT / d) + os.sep for d in ("engine", "tools", "retrieval", "voice_bank", "assistant"))
_RUNNING_AT = re.compile(r"\bat (/\S+?):\d+")


class _WatchedPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_CALLBACK_S
        return loop


class _SlowCallbacks(logging.Handler):
    """Collects asyncio's "Executing <handle> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen_lock = threading.Lock()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("Executing"):
            return
        text = record.getMessage()
        files = _RUNNING_AT.findall(text)
        # the handle's innermost frame decides: product code blocking, or a test's own coroutine
        if files and files[0].startswith(PRODUCT):
            with self.seen_lock:
                self.seen.append(text[:400])


_handler = _SlowCallbacks()


def pytest_configure(config) -> None:
    if os.environ.get("STEPVOICE_LOOP_WATCH", "1") == "0":
        return
    asyncio.set_event_loop_policy(_WatchedPolicy())
    log = logging.getLogger("asyncio")
    log.addHandler(_handler)
    log.setLevel(min(log.level or logging.WARNING, logging.WARNING))


@pytest.fixture(autouse=True)
def _no_slow_product_callbacks():
    with _handler.seen_lock:
        _handler.seen.clear()
    yield
    with _handler.seen_lock:
        seen, _handler.seen[:] = list(_handler.seen), []
    if seen:
        pytest.fail(f"the event loop was blocked > {SLOW_CALLBACK_S * 1000:.0f} ms by product code:\n" + "\n".join(seen),
                    pytrace=False)
