"""A one-line progress bar with ETA on a terminal; silent when the stream is not a TTY (logs, CI, pipes)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """`update()` once per finished item; the ETA comes from the items finished in this run only
    (items done before a resume took no time now)."""

    def __init__(self, total: int, done: int = 0, label: str = "", stream: TextIO | None = None, width: int = 30):
        self.total, self.done, self.label, self.width = total, done, label, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.done_here = 0
        self._draw()

    def eta_s(self) -> float | None:
        if not self.done_here:
            return None
        per_item = (time.perf_counter() - self.start) / self.done_here
        return per_item * (self.total - self.done)

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * self.width)
        eta = self.eta_s()
        tail = f"ETA {_clock(eta)}" if eta is not None else "ETA --:--"
        return f"{self.label} [{bar:<{self.width}}] {self.done}/{self.total} {tail}"

    def update(self, n: int = 1) -> None:
        self.done += n
        self.done_here += n
        self._draw()

    def _draw(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
