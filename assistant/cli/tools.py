"""`stepvoice tools list|call`: what the model is offered, and a way to try one tool by hand."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("tools", help="list the tools the model can call, or call one by hand")
    sub = p.add_subparsers(dest="tools_command", metavar="ACTION", required=True)

    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--tools-module", action="append", default=[], metavar="PATH",
                        help="also load tools from a .py file or module (repeatable)")
    shared.add_argument("--no-mcp", action="store_true", help="do not start the MCP servers of the config")

    ls = sub.add_parser("list", parents=[common, shared], help="print the tools as the model sees them")
    ls.add_argument("--json", action="store_true",
                    help="print exactly the content of the model's tool_json_schemas turn")
    ls.set_defaults(handler=list_tools)

    call = sub.add_parser("call", parents=[common, shared], help="run one tool and print what the model would read")
    call.add_argument("name", help="tool name")
    call.add_argument("arguments", nargs="?", default="{}", help="arguments as a JSON object (default {})")
    call.add_argument("--json", action="store_true", help="print the whole result as JSON")
    call.set_defaults(handler=call_tool)


def list_tools(args: argparse.Namespace) -> int:
    import asyncio

    from stepvoice.tools.schema import signature

    registry = _registry(args)  # imports plugins: before the loop starts, not inside it

    async def collect() -> tuple[str, list[tuple[str, str, str]]]:
        async with registry:
            rows = [(signature(t.name, t.parameters), t.source, t.description) for t in registry.tools()]
            for problem in registry.problems:
                print(f"warning: {problem}", file=sys.stderr)
            return registry.schemas_json(), rows

    schemas_json, rows = asyncio.run(collect())
    if args.json:
        print(schemas_json)
        return 0
    for sig, source, description in rows:
        print(f"{sig}    [{source}]")
        for line in (description or "(no description)").splitlines():
            print(f"    {line}")
    return 0


def call_tool(args: argparse.Namespace) -> int:
    import asyncio

    from stepvoice.engine.errors import ConfigError
    from stepvoice.engine.events import ToolCall
    from stepvoice.tools import ToolContext, run

    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as e:
        raise ConfigError(f"arguments are not valid JSON: {e.msg} at column {e.colno}") from None

    registry = _registry(args)

    async def go() -> Any:
        async with registry:
            # A non-object is passed on as is: the runner answers what it expected.
            return await run(ToolCall(args.name, arguments), ToolContext(config=_tools_config(args)), registry)

    result = asyncio.run(go())
    if args.json:
        print(json.dumps({"name": result.name, "ok": result.ok, "content": result.content,
                          "elapsed_s": round(result.elapsed_s, 3), "data": result.data},
                         ensure_ascii=False, default=str))
    else:
        print(result.content)
    return 0 if result.ok else 1


def _tools_config(args: argparse.Namespace) -> Any:
    cached = getattr(args, "_tools_config", None)
    if cached is None:
        try:
            from stepvoice.assistant.config import load_config
        except ImportError:  # the assistant config module is optional for this command
            from stepvoice.tools import ToolsConfig

            cached = ToolsConfig()
        else:
            cached = load_config(args.config_file).tools
        args._tools_config = cached
    return cached


def _registry(args: argparse.Namespace) -> Any:
    from stepvoice.tools import load_registry

    return load_registry(_tools_config(args), tools_modules=args.tools_module, mcp=not args.no_mcp)
