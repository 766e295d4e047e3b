"""The set of tools offered to the model, by unique name.

Built-ins, entry-point plugins, `--tools-module` files and MCP servers all
arrive through `add`. A second tool under a taken name is refused with an
error naming both sources. MCP servers are connected when the registry is
entered (`async with registry:` or `await registry.start()`) and stopped by
`aclose()`.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from stepvoice.engine.messages import Message
from stepvoice.tools.decorator import FunctionTool, Tool
from stepvoice.tools.errors import ToolRegistryError


class ToolRegistry:
    def __init__(self, disabled: Sequence[str] = ()):
        self._tools: dict[str, Tool] = {}
        self.disabled = set(disabled)  # built-in/plugin tools skipped (e.g. to replace one with your own)
        self._source = ""  # who is adding tools right now (set by the loaders)
        self._from_plugin = False  # True while entry points load: only they honour `disabled`
        self._pending_mcp: list[Any] = []  # McpServerConfig not yet connected
        self._mcp_servers: list[Any] = []  # connected tools.mcp_client.McpServer
        self.problems: list[str] = []  # plugins skipped because they failed to load
        self.max_result_chars: int | None = None  # MCP results are cut to this while being read (load_registry sets it)

    # ---- adding -------------------------------------------------------------------

    def add(self, item: Tool | Callable[..., Any], *, source: str | None = None) -> Tool | None:
        """Register a Tool (or a plain function, made a tool as by `@tool`); None if a disabled plugin tool."""
        t = item if isinstance(item, Tool) else FunctionTool(item)
        src = source or self._source or t.source
        if self._from_plugin and t.name in self.disabled:
            return None
        if t.name in self._tools:
            other = self._tools[t.name]
            raise ToolRegistryError(
                f"tool name {t.name!r} from {src} is already taken by {other.source}; rename one "
                f"(@tool(name=...)) or disable one ([tools] disabled = [\"{t.name}\"])"
            )
        t.source = src
        self._tools[t.name] = t
        return t

    register = add  # the name plugins call: `def register(registry): registry.register(my_tool)`

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)

    @contextmanager
    def loading_from(self, source: str, plugin: bool = False) -> Iterator["ToolRegistry"]:
        """Tag tools added inside the block with `source`; `plugin` tools honour `disabled`."""
        previous = self._source, self._from_plugin
        self._source, self._from_plugin = source, plugin
        try:
            yield self
        finally:
            self._source, self._from_plugin = previous

    # ---- reading ------------------------------------------------------------------

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI-form declarations, in registration order."""
        return [t.schema() for t in self._tools.values()]

    def schemas_json(self) -> str:
        """The exact content of the `tool_json_schemas` turn."""
        return json.dumps(self.schemas(), ensure_ascii=False)

    def message(self) -> Message:
        """The `tool_json_schemas` turn that declares these tools (goes right after `system`)."""
        return Message.text("tool_json_schemas", self.schemas_json())

    # ---- MCP lifecycle ------------------------------------------------------------

    def add_mcp_servers(self, servers: Sequence[Any]) -> None:
        """Queue MCP servers (McpServerConfig or mappings); they connect on `start()`."""
        from stepvoice.tools.config import McpServerConfig, _build

        for i, s in enumerate(servers):
            self._pending_mcp.append(_build(McpServerConfig, s, f"mcp_servers[{i}]"))

    async def start(self) -> "ToolRegistry":
        """Connect queued MCP servers and register their tools. Stops all of them on failure."""
        from stepvoice.tools.mcp_client import McpServer

        pending, self._pending_mcp = self._pending_mcp, []
        try:
            for cfg in pending:
                server = McpServer(cfg, self.max_result_chars)
                self._mcp_servers.append(server)
                for t in await server.start():
                    self.add(t, source=f"MCP server {cfg.name}")
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        servers, self._mcp_servers = self._mcp_servers, []
        for server in reversed(servers):
            for t in server.tools:
                if self._tools.get(t.name) is t:
                    del self._tools[t.name]
            await server.close()

    async def __aenter__(self) -> "ToolRegistry":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
