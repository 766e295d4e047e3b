"""Tools the model can call: the @tool protocol, the registry, plugins, MCP servers and the runner.

    from tools import tool, ToolError

    @tool
    def roll_dice(sides: int = 6) -> int:
        "Roll a die with the given number of sides."
        ...
"""
from tools.config import McpServerConfig, SearchConfig, ToolsConfig, WeatherConfig
from tools.context import ToolContext
from tools.decorator import FunctionTool, Tool, ToolOutput, tool
from tools.errors import ToolDefinitionError, ToolError, ToolRegistryError
from tools.plugins import load_registry, open_registry
from tools.registry import ToolRegistry
from tools.runner import run, run_many
from tools.sanitize import neutralize

__all__ = [
    "tool", "Tool", "FunctionTool", "ToolOutput", "ToolError", "ToolDefinitionError", "ToolRegistryError",
    "ToolContext", "ToolRegistry", "ToolsConfig", "SearchConfig", "WeatherConfig", "McpServerConfig",
    "load_registry", "open_registry", "run", "run_many", "neutralize",
]
