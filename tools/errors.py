"""Errors of the tools package: what the model reads, and what the user reads."""
from __future__ import annotations

from stepvoice.engine.errors import ConfigError


class ToolError(Exception):
    """A failure the model should read, e.g. `raise ToolError("no city called Xyz")`.

    Raise it from a tool: the runner shows its message to the model (neutralised
    and size-capped); any other exception shows only a generic message.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArguments(ToolError):
    """Arguments that do not match a tool's schema; `problems` lists what was wrong."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems) or "invalid arguments")
        self.problems = problems


class ToolDefinitionError(ConfigError):
    """A function that cannot become a tool (bad name, *args, unresolvable type hints)."""


class ToolRegistryError(ConfigError):
    """A registry that cannot be built: name collisions, plugins or MCP servers that fail to load."""
