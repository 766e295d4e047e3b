"""Tools of MCP servers (official `mcp` SDK, stdio transport), registered like any other tool.

One `McpServer` per configured server. The SDK's stdio client and session
are anyio context managers that must be entered and left in the same task,
so each server gets one owner task that opens the connection, lists the
tools, then waits for `close()`. Calls are plain requests on the open
session from any task.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from stepvoice.tools.config import McpServerConfig
from stepvoice.tools.context import ToolContext
from stepvoice.tools.decorator import Tool, ToolOutput
from stepvoice.tools.errors import InvalidArguments, ToolError, ToolRegistryError

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0


class McpServer:
    def __init__(self, config: McpServerConfig, max_chars: int | None = None):
        self.config = config
        self.max_chars = max_chars  # the runner cuts results to this anyway; None = no early cut
        self.tools: list[McpTool] = []
        self._session: Any = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._error: BaseException | None = None

    async def start(self) -> list["McpTool"]:
        """Start the server process, list its tools. Raises ToolRegistryError naming the server."""
        self._task = asyncio.create_task(self._own(), name=f"mcp:{self.config.name}")
        waiter = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({waiter, self._task}, timeout=self.config.startup_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self._ready.is_set():
            await self.close()
            why = f"{type(self._error).__name__}: {self._error}" if self._error else \
                f"no answer within {self.config.startup_timeout_s:g} s"
            raise ToolRegistryError(f"MCP server {self.config.name!r} ({self.config.command}) did not start: {why}")
        return self.tools

    async def _own(self) -> None:
        # The first import of the MCP client and of jsonschema (which it runs on every tool
        # result) takes ~1 s: done in a thread so the event loop keeps serving meanwhile.
        await asyncio.to_thread(_import_client_modules)
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        cfg = self.config
        params = StdioServerParameters(command=cfg.command, args=list(cfg.args), env=dict(cfg.env) or None,
                                       cwd=cfg.cwd)
        # The server's own log goes to our stderr only when debugging.
        errlog = open(os.devnull, "w") if not log.isEnabledFor(logging.DEBUG) else None
        try:
            async with stdio_client(params, **({"errlog": errlog} if errlog else {})) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    listed = await _list_all_tools(session)
                    self._session = session
                    self.tools = [McpTool.from_listing(self, t) for t in listed]
                    self._ready.set()
                    await self._stop.wait()
        except Exception as e:  # surfaced by start(); after start, logged
            self._error = e
            if self._ready.is_set():
                log.warning("MCP server %s stopped: %r", cfg.name, e)
            else:
                log.debug("MCP server %s failed to start", cfg.name, exc_info=True)
        finally:
            self._session = None
            if errlog:
                errlog.close()

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutput:
        session = self._session
        if session is None:
            raise ToolError(f"the MCP server {self.config.name} is not running")
        result = await session.call_tool(name, arguments)
        # cut while joining: a server answering megabytes costs only what the model may read
        text = render_content(_field(result, "content") or [], self.max_chars)
        structured = _field(result, "structured_content", "structuredContent")
        if _field(result, "is_error", "isError"):
            raise ToolError(text or "the MCP tool reported an error")
        if not text and structured is not None:
            text = json.dumps(structured, ensure_ascii=False)
        return ToolOutput(text or "done (no output)", structured if structured is not None else text)

    async def close(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            task.cancel()
            log.warning("MCP server %s did not stop in time; cancelled", self.config.name)


class McpTool(Tool):
    """A tool served by an MCP server; the server validates the arguments in full."""

    def __init__(self, server: McpServer, name: str, description: str, parameters: dict[str, Any]):
        super().__init__(name, description, parameters, source=f"MCP server {server.config.name}")
        self.server = server

    @classmethod
    def from_listing(cls, server: McpServer, listed: Any) -> "McpTool":
        schema = dict(_field(listed, "input_schema", "inputSchema") or {})
        schema.pop("$schema", None)
        schema.pop("title", None)
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        return cls(server, listed.name, _field(listed, "description") or "", schema)

    def validate(self, arguments: Any) -> dict[str, Any]:
        if not isinstance(arguments, dict):
            raise InvalidArguments([f"arguments must be a JSON object, not {type(arguments).__name__}"])
        missing = [k for k in self.parameters.get("required", []) if k not in arguments]
        if missing:
            raise InvalidArguments([f"{k}: missing (required)" for k in missing])
        return dict(arguments)

    async def invoke(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        return await self.server.call(self.name, arguments)


def _import_client_modules() -> None:
    import importlib

    for name in ("mcp", "mcp.client.stdio", "jsonschema"):
        try:
            importlib.import_module(name)
        except ImportError:  # jsonschema is optional to us; a missing mcp is reported by _own
            pass


async def _list_all_tools(session: Any) -> list[Any]:
    tools, cursor = [], None
    for _ in range(100):  # a server that pages forever cannot hang startup
        if cursor is None:
            page = await session.list_tools()
        else:
            from mcp.types import PaginatedRequestParams

            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        tools.extend(page.tools)
        cursor = _field(page, "next_cursor", "nextCursor")
        if not cursor:
            break
    return tools


def render_content(blocks: list[Any], max_chars: int | None = None) -> str:
    """The text of an MCP result; with `max_chars`, joining stops once that much (plus one) is there."""
    parts = []
    size = 0
    for b in blocks:
        if max_chars is not None and size > max_chars:
            parts.append("[more content not shown]")
            break
        kind = getattr(b, "type", "")
        if kind == "text":
            parts.append(b.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} ({getattr(b, 'mime_type', None) or getattr(b, 'mimeType', '?')}) not shown]")
        elif kind == "resource":
            res = b.resource
            parts.append(getattr(res, "text", None) or f"[resource {getattr(res, 'uri', '')}]")
        else:
            parts.append(f"[{kind or 'content'} not shown]")
        if max_chars is not None and len(parts[-1]) > max_chars + 1:
            parts[-1] = parts[-1][: max_chars + 1]  # the runner's cut then says it was truncated
        size += len(parts[-1]) + 1
    return "\n".join(parts)


def _field(obj: Any, *names: str) -> Any:
    """Read a field under its mcp 2 (snake_case) or mcp 1 (camelCase) name."""
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    return None
