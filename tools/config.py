"""Settings of the tools package (the `[tools]` section of the config file).

Dataclasses whose fields are the config keys; `ToolsConfig.from_dict` refuses
unknown keys and wrong kinds with a one-line `ConfigError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from stepvoice.engine.errors import ConfigError

OPEN_METEO_GEOCODING = "https://geocoding-api.open-meteo.com/v1/search"
OPEN_METEO_FORECAST = "https://api.open-meteo.com/v1/forecast"


@dataclass
class SearchConfig:
    region: str = "us-en"  # ddgs region code (us-en, uk-en, cn-zh, wt-wt ...)
    safesearch: str = "moderate"  # on | moderate | off
    max_results: int = 5
    backend: str = "auto"  # ddgs backend(s), comma separated
    timeout_s: float = 8.0

    def __post_init__(self) -> None:
        if self.safesearch not in ("on", "moderate", "off"):
            raise ConfigError(f"tools.search.safesearch must be on, moderate or off, not {self.safesearch!r}")
        if not isinstance(self.max_results, int) or not 1 <= self.max_results <= 50:
            raise ConfigError(f"tools.search.max_results must be an integer 1..50, not {self.max_results!r}")


@dataclass
class WeatherConfig:
    geocoding_url: str = OPEN_METEO_GEOCODING
    forecast_url: str = OPEN_METEO_FORECAST
    units: str = "metric"  # metric (°C, km/h, mm) | imperial (°F, mph, inch)
    language: str = "en"  # language of place names from the geocoder
    timeout_s: float = 8.0

    def __post_init__(self) -> None:
        if self.units not in ("metric", "imperial"):
            raise ConfigError(f"tools.weather.units must be metric or imperial, not {self.units!r}")


@dataclass
class McpServerConfig:
    """One MCP server started over stdio: `command args...` with extra `env`."""

    name: str
    command: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    startup_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("tools.mcp_servers: every server needs a non-empty 'name'")
        if not isinstance(self.command, str) or not self.command:
            raise ConfigError(f"tools.mcp_servers[{self.name}]: needs a 'command' string")
        if not isinstance(self.args, list) or not all(isinstance(a, str) for a in self.args):
            raise ConfigError(f"tools.mcp_servers[{self.name}]: 'args' must be a list of strings")
        if not isinstance(self.env, dict) or not all(isinstance(v, str) for v in self.env.values()):
            raise ConfigError(f"tools.mcp_servers[{self.name}]: 'env' must map names to strings")


@dataclass
class ToolsConfig:
    timeout_s: float = 15.0  # per call, unless the tool sets its own
    max_result_chars: int = 4000  # longer results are cut and marked as cut
    timezone: str | None = None  # IANA name for get_date_time; None = the machine's
    disabled: list[str] = field(default_factory=list)  # built-in/plugin tools not to offer (e.g. to replace one)
    tools_modules: list[str] = field(default_factory=list)  # files or modules with extra tools
    mcp_servers: list[McpServerConfig] = field(default_factory=list)
    search: SearchConfig = field(default_factory=SearchConfig)
    weather: WeatherConfig = field(default_factory=WeatherConfig)
    # Tool policy (tools.policy): tool name, glob or "mcp:SERVER" -> allow | confirm | deny.
    # Unnamed built-in/plugin tools are allowed; unnamed MCP tools get `mcp_default`.
    policy: dict[str, str] = field(default_factory=dict)
    mcp_default: str = "deny"
    confirm_timeout_s: float = 60.0  # a `confirm` left unanswered this long is a refusal
    max_threads: int = 8  # threads for sync tools (their own pool, apart from model steps and token2wav)

    def __post_init__(self) -> None:
        from stepvoice.tools.policy import MODES

        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ConfigError(f"tools.timeout_s must be a number > 0, not {self.timeout_s!r}")
        if not isinstance(self.max_result_chars, int) or self.max_result_chars < 200:
            raise ConfigError(f"tools.max_result_chars must be an integer >= 200, not {self.max_result_chars!r}")
        if not isinstance(self.policy, dict):
            raise ConfigError("tools.policy must be a table of tool name -> allow | confirm | deny")
        for key, mode in self.policy.items():
            if mode not in MODES:
                raise ConfigError(f"tools.policy[{key!r}] must be allow, confirm or deny, not {mode!r}")
        if self.mcp_default not in MODES:
            raise ConfigError(f"tools.mcp_default must be allow, confirm or deny, not {self.mcp_default!r}")
        if not isinstance(self.confirm_timeout_s, (int, float)) or self.confirm_timeout_s <= 0:
            raise ConfigError(f"tools.confirm_timeout_s must be a number > 0, not {self.confirm_timeout_s!r}")
        if not isinstance(self.max_threads, int) or isinstance(self.max_threads, bool) or not 1 <= self.max_threads <= 256:
            raise ConfigError(f"tools.max_threads must be an integer 1..256, not {self.max_threads!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "tools") -> "ToolsConfig":
        data = dict(data or {})
        _refuse_unknown(cls, data, where)
        sub: dict[str, Any] = {}
        if "search" in data:
            sub["search"] = _build(SearchConfig, data.pop("search"), f"{where}.search")
        if "weather" in data:
            sub["weather"] = _build(WeatherConfig, data.pop("weather"), f"{where}.weather")
        if "mcp_servers" in data:
            servers = data.pop("mcp_servers")
            if not isinstance(servers, list):
                raise ConfigError(f"{where}.mcp_servers must be a list of tables")
            sub["mcp_servers"] = [_build(McpServerConfig, s, f"{where}.mcp_servers[{i}]") for i, s in enumerate(servers)]
        for key in ("disabled", "tools_modules"):
            if key in data and not (isinstance(data[key], list) and all(isinstance(x, str) for x in data[key])):
                raise ConfigError(f"{where}.{key} must be a list of strings")
        return cls(**data, **sub)

    @classmethod
    def coerce(cls, config: Any) -> "ToolsConfig":
        """Accept a ToolsConfig, a mapping, None, or an object with a `.tools` attribute (the assistant config)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, Mapping):
            return cls.from_dict(config)
        inner = getattr(config, "tools", None)
        if inner is not None:
            return cls.coerce(inner)
        raise ConfigError(f"cannot read tools settings from a {type(config).__name__}")


def _refuse_unknown(cls: type, data: Mapping[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _build(cls: type, data: Any, where: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table (mapping), not {type(data).__name__}")
    _refuse_unknown(cls, data, where)
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None
