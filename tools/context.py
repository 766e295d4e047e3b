"""The services a tool may ask for by declaring a `ToolContext` parameter.

The assistant fills one per session: its voice bank, retriever, HTTP client,
clock and settings, and a callback that switches the speaking voice. The
parameter is found by its type annotation and never appears in the schema.
"""
from __future__ import annotations

import asyncio
import inspect
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

import httpx

from stepvoice.tools.config import ToolsConfig


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ToolContext:
    config: ToolsConfig = field(default_factory=ToolsConfig)
    voice_bank: Any = None  # duck-typed: .find(query) -> object with .name, .description, .score
    retriever: Any = None  # duck-typed: .search(query, k=...) -> hits
    http: httpx.AsyncClient | None = None  # shared client; tools open a temporary one when None
    clock: Callable[[], datetime] = utc_now  # timezone-aware "now" (tests pin it)
    on_voice_change: Callable[[str], Any] | None = None  # called with the new voice name; may be async
    services: dict[str, Any] = field(default_factory=dict)  # anything else a host offers plugins
    pool: Any = None  # tools.pool.ToolPool for sync tools; None: the process's shared tool pool

    def tool_pool(self) -> Any:
        """Where sync tools run: never the default executor that model steps and token2wav use."""
        if self.pool is None:
            from stepvoice.tools.pool import shared_pool

            self.pool = shared_pool(self.config.max_threads)
        return self.pool

    @asynccontextmanager
    async def http_client(self, timeout_s: float) -> AsyncIterator[httpx.AsyncClient]:
        """The shared client, or a temporary one closed on exit."""
        if self.http is not None:
            yield self.http
            return
        # Building a client loads the CA bundle (0.1-0.2 s): off the event loop.
        client = await asyncio.to_thread(httpx.AsyncClient, timeout=timeout_s, follow_redirects=True)
        async with client:
            yield client

    async def change_voice(self, name: str) -> bool:
        """Tell the host to switch voices; False when no host listens."""
        if self.on_voice_change is None:
            return False
        out = self.on_voice_change(name)
        if inspect.isawaitable(out):
            await out
        return True
