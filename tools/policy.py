"""Which tools may run: `allow`, `confirm` (a person says yes first) or `deny`, per tool.

The `[tools] policy` table maps a tool name, a glob over names (`fs_*`), or
`mcp:SERVER` (every tool of one MCP server) to a mode; the first matching key
wins, an exact name before `mcp:SERVER` before globs. Tools nobody named get
`allow` when they are Python code the operator installed (built-ins, plugins,
tool modules) and `mcp_default` (`deny` unless changed) when an MCP server
offers them: an MCP server decides its own tool names and descriptions, so its
tools run only once the operator has allowed them.

`confirm` asks whoever drives the session through a `Confirmer`: the terminal
in `chat`, an `mcp_approval_request` item in `serve`, the task's own allow-list
in `run`. With no confirmer (or no answer in time) the call is refused. The
confirmer of the running task is a context variable, so the host sets it once
(per connection, per chat) and every tool call made under it sees it.
"""
from __future__ import annotations

import asyncio
import fnmatch
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping

from stepvoice.engine.events import ToolCall

MODES = ("allow", "confirm", "deny")

Confirmer = Callable[[ToolCall, Any], Awaitable[bool]]

# The confirmer of the current connection / chat / task (None: nobody can be asked).
CONFIRMER: ContextVar[Confirmer | None] = ContextVar("stepvoice_tool_confirmer", default=None)


@dataclass(frozen=True)
class Decision:
    mode: str  # allow | confirm | deny
    rule: str  # the policy key that decided, or "default (...)" - said in refusals so the operator can find it


def mcp_server_of(tool: Any) -> str | None:
    """The MCP server name of a tool served by one, else None."""
    server = getattr(tool, "server", None)
    config = getattr(server, "config", None)
    name = getattr(config, "name", None)
    if name:
        return str(name)
    source = str(getattr(tool, "source", "") or "")
    return source.removeprefix("MCP server ").strip() or None if source.startswith("MCP server ") else None


def decide(tool: Any, policy: Mapping[str, str], mcp_default: str = "deny") -> Decision:
    """The mode for `tool` under `policy` (see the module doc for the order)."""
    name = getattr(tool, "name", str(tool))
    server = mcp_server_of(tool)
    if name in policy:
        return Decision(policy[name], name)
    if server is not None:
        for key in (f"mcp:{server}/{name}", f"mcp:{server}"):
            if key in policy:
                return Decision(policy[key], key)
    for key, mode in policy.items():
        if not key.startswith("mcp:") and any(c in key for c in "*?[") and fnmatch.fnmatchcase(name, key):
            return Decision(mode, key)
    if server is not None:
        return Decision(mcp_default, f"default for MCP tools (mcp_default = {mcp_default!r})")
    return Decision("allow", "default for built-in and plugin tools")


def describe_call(call: ToolCall, limit: int = 300) -> str:
    """One line naming the call and its arguments, for a person to approve."""
    import json

    args = json.dumps(call.arguments, ensure_ascii=False)
    if len(args) > limit:
        args = args[:limit] + "…"
    return f"{call.name}({args})"


async def ask(call: ToolCall, tool: Any, timeout_s: float) -> bool | None:
    """Ask the current confirmer; None when there is none, False when it does not answer in time."""
    confirmer = CONFIRMER.get()
    if confirmer is None:
        return None
    try:
        return bool(await asyncio.wait_for(confirmer(call, tool), timeout_s))
    except asyncio.TimeoutError:
        return False


def terminal_confirmer(stream_in: Any = None, stream_out: Any = None) -> Confirmer:
    """Ask at the terminal (`chat`): `Run fs.delete_file({...})? [y/N]`; read off the event loop."""

    async def confirm(call: ToolCall, tool: Any) -> bool:
        out = stream_out or sys.stderr
        inp = stream_in or sys.stdin

        def read() -> str:
            print(f"\nThe assistant wants to run {describe_call(call)} "
                  f"(from {getattr(tool, 'source', '') or 'a tool'}). Allow? [y/N] ", end="", file=out, flush=True)
            line = inp.readline()
            return line.strip().lower()

        return (await asyncio.to_thread(read)) in ("y", "yes")

    return confirm


def allow_list_confirmer(allowed: Iterable[str]) -> Confirmer:
    """`run`: a task allows named tools (or globs) that the policy would otherwise ask about."""
    patterns = tuple(allowed)

    async def confirm(call: ToolCall, tool: Any) -> bool:
        return any(fnmatch.fnmatchcase(call.name, p) for p in patterns)

    return confirm


__all__ = ["MODES", "CONFIRMER", "Confirmer", "Decision", "decide", "ask", "describe_call", "mcp_server_of",
           "terminal_confirmer", "allow_list_confirmer"]
