"""Limits at the socket, before a Realtime connection exists or while it waits.

`ClientSlots` caps connections per client address; `idle_messages` closes a
connection that sends nothing (and waits for no response) for `idle_timeout_s`.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, AsyncIterator

from stepvoice.assistant.server.protocol import ProtocolError, error_event

IDLE_CLOSE_CODE = 4408  # application close code: idle for too long (4000-4999 are the application's)
IDLE_TEXT = "idle timeout"


class ClientSlots:
    """Live connections per client address; one client cannot take every slot of the server."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._count: Counter[str] = Counter()

    def full(self, address: str) -> bool:
        return self._count[address] >= self.per_client

    def take(self, address: str) -> bool:
        if self.full(address):
            return False
        self._count[address] += 1
        return True

    def give_back(self, address: str) -> None:
        self._count[address] -= 1
        if self._count[address] <= 0:
            del self._count[address]


def client_address(connection: Any) -> str:
    remote = getattr(connection, "remote_address", None)
    return str(remote[0]) if remote else "?"


async def idle_messages(ws: Any, conn: Any, idle_timeout_s: float) -> AsyncIterator[Any]:
    """The client's frames; after `idle_timeout_s` with no frame and no response in flight, the client
    gets an `error` event (code idle_timeout) and the connection closes with code 4408."""
    from websockets.exceptions import ConnectionClosed

    while True:
        try:
            message = await asyncio.wait_for(ws.recv(), idle_timeout_s)
        except asyncio.TimeoutError:
            if getattr(conn, "responding", False):
                continue
            err = ProtocolError(f"no client event for {idle_timeout_s:g} s: closing the connection", "idle_timeout")
            try:
                await conn.send(error_event(err))
                await ws.close(IDLE_CLOSE_CODE, IDLE_TEXT)
            except ConnectionClosed:
                pass
            return
        except ConnectionClosed:
            return
        yield message


__all__ = ["ClientSlots", "client_address", "idle_messages", "IDLE_CLOSE_CODE", "IDLE_TEXT"]
