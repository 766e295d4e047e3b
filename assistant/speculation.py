"""Speculative replies: start answering at a short pause, before the endpoint is sure.

    spec = session.speculate(samples_so_far)          # at a ~200 ms pause: prefill + generate, silently
    ...
    async for event in spec.commit(cancel):           # the endpoint confirmed the same utterance
        play(event)                                   #   what is ready comes at once, the rest live
    # or
    await spec.discard()                              # the user went on talking

Until `commit`, nothing leaves the speculation: its events are held in a
queue (nothing is played or shown), tool calls wait at the commit gate (no
tool runs), and `discard` puts back exactly what the session had before:
history (the speculative user turn, its reply and any compaction), pending
client calls, the synthesis stream, the prefix cache (cropped to the ids it
held before that the speculation did not change), and a stateful engine's
position (`backend.checkpoint()`, the scripted engine: its replies play again).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator

from stepvoice.engine.events import Event

if TYPE_CHECKING:
    from stepvoice.assistant.session import Session

log = logging.getLogger(__name__)
_DONE = object()


class Speculation:
    """One speculative turn of a session (at most one at a time; the session is not used meanwhile)."""

    def __init__(self, session: "Session", user_input: Any, *, reply: str | None = None, style: str | None = None):
        self.session = session
        self.input = user_input
        self.state = "running"  # running -> committed | discarded
        self.cancel = asyncio.Event()
        self.gate = asyncio.Event()  # set by commit: tools may run
        self.started_at = asyncio.get_running_loop().time()
        self.tokens = 0  # completion tokens generated so far (the compute a discard throws away)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._history = list(session.history)
        self._pending = dict(session.pending_client_calls)
        self._cache_ids = list(session.prefix.ids) if session.prefix is not None else None
        checkpoint = getattr(session.backend, "checkpoint", None)  # a stateful engine (scripted) can undo
        self._restore_backend = checkpoint() if callable(checkpoint) else None
        self._task = asyncio.create_task(self._run(reply, style), name="speculation")

    async def _run(self, reply: str | None, style: str | None) -> None:
        from stepvoice.engine.events import TurnEnd

        try:
            async for event in self.session.respond(self.input, reply=reply, cancel=self.cancel, style=style,
                                                    commit_gate=self.gate):
                if isinstance(event, TurnEnd):
                    self.tokens = event.usage.completion_tokens
                await self._queue.put(event)
        except Exception as e:  # noqa: BLE001 - surfaces at commit (a discard ignores it)
            await self._queue.put(e)
        finally:
            await self._queue.put(_DONE)

    @property
    def history_before(self) -> list:
        """The session's history when the speculation started."""
        return self._history

    @property
    def user_message(self) -> Any:
        """The user turn the speculation added to history (None if it never got there)."""
        history = self.session.history
        at = len(self._history)
        return history[at] if len(history) > at and history[at].role in ("human", "input") else None

    @property
    def ready(self) -> int:
        """Events already generated and waiting for the commit."""
        return self._queue.qsize()

    async def commit(self, cancel: asyncio.Event | None = None) -> AsyncIterator[Event]:
        """The turn is real: yield what was generated, then the rest as it comes. `cancel`
        (barge-in) cancels it like a normal turn."""
        if self.state != "running":
            raise RuntimeError(f"speculation already {self.state}")
        self.state = "committed"
        self.gate.set()
        relay = asyncio.create_task(_relay(cancel, self.cancel)) if cancel is not None else None
        try:
            while True:
                item = await self._queue.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            if relay is not None:
                relay.cancel()
            if not self._task.done():  # the consumer left early: stop like a cancelled turn
                self.cancel.set()
                await asyncio.gather(self._task, return_exceptions=True)

    async def discard(self) -> None:
        """The user went on: stop, and leave the session as if this never started."""
        if self.state != "running":
            return
        self.state = "discarded"
        self.cancel.set()  # cooperative: the engine stops between tokens and keeps a consistent cache
        await asyncio.gather(self._task, return_exceptions=True)
        s = self.session
        s._history.messages[:] = self._history
        s.pending_client_calls.clear()
        s.pending_client_calls.update(self._pending)
        if s.speech_out is not None:
            s.speech_out.abort()
        if s.prefix is not None and self._cache_ids is not None:
            s.prefix.crop(_common(s.prefix.ids, self._cache_ids))
        if self._restore_backend is not None:
            self._restore_backend()


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


__all__ = ["Speculation"]
