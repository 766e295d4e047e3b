"""Tools the model can call: the @tool protocol, the registry, plugins, MCP servers and the runner.

    from stepvoice.tools import tool, ToolError

    @tool
    def roll_dice(sides: int = 6) -> int:
        "Roll a die with the given number of sides."
        ...
"""
from stepvoice.tools.config import McpServerConfig, SearchConfig, ToolsConfig, WeatherConfig
from stepvoice.tools.context import ToolContext
from stepvoice.tools.decorator import FunctionTool, Tool, ToolOutput, tool
from stepvoice.tools.errors import ToolDefinitionError, ToolError, ToolRegistryError
from stepvoice.tools.plugins import load_registry, open_registry
from stepvoice.tools.registry import ToolRegistry
from stepvoice.tools.runner import run, run_many
from stepvoice.tools.sanitize import neutralize

__all__ = [
    "tool", "Tool", "FunctionTool", "ToolOutput", "ToolError", "ToolDefinitionError", "ToolRegistryError",
    "ToolContext", "ToolRegistry", "ToolsConfig", "SearchConfig", "WeatherConfig", "McpServerConfig",
    "load_registry", "open_registry", "run", "run_many", "neutralize",
]
