"""Where tools come from: entry points (built-ins included), tool modules, MCP servers.

Built-ins go through the same door as third-party plugins: stepvoice's own
distribution declares `builtins = "stepvoice.tools.builtins:register"` in the
`stepvoice.tools` entry-point group. An entry point (or a `--tools-module`
file or module) may name:
  - a `register(registry)` function, which calls `registry.register(...)`;
  - a single Tool (a function decorated with `@tool`);
  - a module, whose `register` function is called if it has one, otherwise
    every module-level Tool is added.
An installed plugin that fails to import is skipped with a warning (kept in
`registry.problems`); a tools module the user named fails loudly; a name
collision is always refused.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from stepvoice.tools.config import ToolsConfig
from stepvoice.tools.decorator import Tool
from stepvoice.tools.errors import ToolRegistryError
from stepvoice.tools.registry import ToolRegistry

GROUP = "stepvoice.tools"
log = logging.getLogger(__name__)


def load_registry(config: Any = None, tools_modules: Sequence[str] = (), mcp_servers: Sequence[Any] = (),
                  *, plugins: bool = True, mcp: bool = True) -> ToolRegistry:
    """Built-ins and plugins (entry points), then tool modules (config, then `tools_modules`).

    MCP servers (config, then `mcp_servers`; none with `mcp=False`) are queued:
    their tools join when the registry is entered (`async with registry:`),
    which also stops them on exit. `plugins=False` skips entry points (built-ins too).
    """
    cfg = ToolsConfig.coerce(config)
    registry = ToolRegistry(disabled=cfg.disabled)
    registry.max_result_chars = cfg.max_result_chars
    if plugins:
        load_entry_points(registry)
    for spec in [*cfg.tools_modules, *tools_modules]:
        load_module(registry, spec)
    if mcp:
        registry.add_mcp_servers([*cfg.mcp_servers, *mcp_servers])
    return registry


async def open_registry(config: Any = None, tools_modules: Sequence[str] = (),
                        mcp_servers: Sequence[Any] = ()) -> ToolRegistry:
    """`load_registry` and connect MCP servers; call `await registry.aclose()` when done."""
    return await load_registry(config, tools_modules, mcp_servers).start()


def load_entry_points(registry: ToolRegistry, group: str = GROUP) -> None:
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name != "builtins", e.name)):
        where = f"plugin {ep.name!r} ({ep.value})"
        try:
            target = ep.load()
        except Exception as e:
            # An installed plugin that cannot import must not take the assistant down with it.
            problem = f"{where} failed to load and was skipped: {type(e).__name__}: {e}"
            log.warning("%s", problem)
            registry.problems.append(problem)
            continue
        source = "built-ins" if ep.name == "builtins" and ep.value.startswith("stepvoice.tools.") else where
        with registry.loading_from(source, plugin=True):
            _apply(registry, target, where)


def load_module(registry: ToolRegistry, spec: str | Path) -> None:
    """Load tools from a Python file path or an importable module name."""
    path = Path(spec).expanduser()
    where = f"tools module {spec}"
    if str(spec).endswith(".py") or path.exists():
        if not path.is_file():
            raise ToolRegistryError(f"{where}: file not found")
        module = _import_file(path, where)
    else:
        try:
            module = importlib.import_module(str(spec))
        except ModuleNotFoundError as e:
            raise ToolRegistryError(f"{where}: no such file or module ({e.name})") from None
        except Exception as e:
            raise ToolRegistryError(f"{where} failed to import: {type(e).__name__}: {e}") from e
    with registry.loading_from(where):
        _apply(registry, module, where)


def _import_file(path: Path, where: str) -> ModuleType:
    # A name derived from the full path: two files called tools.py do not clash.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"stepvoice_tools_module_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ToolRegistryError(f"{where}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ToolRegistryError(f"{where} failed to import: {type(e).__name__}: {e}") from e
    return module


def _apply(registry: ToolRegistry, target: Any, where: str) -> None:
    if isinstance(target, Tool):
        registry.add(target)
    elif isinstance(target, ModuleType):
        register = getattr(target, "register", None)
        if callable(register) and not isinstance(register, Tool):
            _call_register(registry, register, where)
        else:
            found = [v for v in vars(target).values() if isinstance(v, Tool)]
            if not found:
                raise ToolRegistryError(f"{where}: defines no @tool functions and no register(registry)")
            for t in found:
                registry.add(t)
    elif isinstance(target, (list, tuple)):
        for item in target:
            _apply(registry, item, where)
    elif callable(target):
        _call_register(registry, target, where)
    else:
        raise ToolRegistryError(f"{where}: expected a register(registry) function, a tool or a module")


def _call_register(registry: ToolRegistry, register: Any, where: str) -> None:
    if inspect.iscoroutinefunction(register):
        raise ToolRegistryError(f"{where}: register(registry) must be a plain function, not async")
    try:
        out = register(registry)
    except ToolRegistryError:
        raise
    except Exception as e:
        raise ToolRegistryError(f"{where}: register() failed: {type(e).__name__}: {e}") from e
    if out is not None:  # a register() may also return tools instead of adding them
        _apply(registry, out, where)
