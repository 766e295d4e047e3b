"""Assistant settings: a TOML file, then `STEPVOICE_*` environment variables, then flags.

The dataclasses below are the whole schema; the TOML file mirrors them
section by section:

    model = "stepfun-ai/Step-Audio-2-mini"
    reply = "speech"
    voice = "default"

    [tools]                 # the tools package's settings (tools.config.ToolsConfig)
    timeout_s = 10
    tools_modules = ["my_tools.py"]

    [tool_loop]
    max_rounds = 3

    [rag]
    mode = "auto"

Environment variables use the upper-cased key, with `__` between a section
and its field: `STEPVOICE_MODEL`, `STEPVOICE_TOOLS__TIMEOUT_S=5`,
`STEPVOICE_RAG__MODE=off`. Lists in the environment are comma separated.
Overrides (from flags) are a dict of dotted keys: `{"tools.timeout_s": 5}`.
"""
from __future__ import annotations

import dataclasses
import os
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping

from stepvoice.engine.errors import ConfigError
from stepvoice.tools.config import ToolsConfig

ENV_PREFIX = "STEPVOICE_"
# Variables with the prefix that name a setting's word but are not settings (data_dir comes from STEPVOICE_HOME).
ENV_NOT_SETTINGS = frozenset({"STEPVOICE_HOME", "STEPVOICE_CONFIG", "STEPVOICE_DEBUG"})

# The official example's instruction appended after tool results.
OFFICIAL_SUMMARY_INSTRUCTION = "\n\n\n请用口语化形式总结检索结果，简短地回答用户的问题。"


@dataclass
class GenerationConfig:
    """Sampling defaults (the official chat examples); a task preset may override them."""

    max_new_tokens: int = 2048
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.05
    seed: int | None = None

    def __post_init__(self) -> None:
        from stepvoice.engine.options import GenerationOptions

        try:  # one set of rules: the engine's own options validate these values
            GenerationOptions(**{f.name: getattr(self, f.name) for f in fields(self)})
        except ValueError as e:
            raise ConfigError(f"generation.{e}") from None


@dataclass
class ToolLoopConfig:
    """How the session runs the model's calls (the tools themselves are set in `[tools]`)."""

    enabled: bool = True
    max_rounds: int = 4  # tool rounds per user turn; further calls are answered "limit reached"
    timeout_s: float = 30.0  # the session's own limit per call, above the tool's own timeout
    summary_instruction: str = OFFICIAL_SUMMARY_INSTRUCTION  # appended after the last result of a round

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError("tool_loop.timeout_s must be > 0")
        if self.max_rounds < 0:
            raise ConfigError("tool_loop.max_rounds must be >= 0")


@dataclass
class RagConfig:
    mode: Literal["auto", "off", "tool-only"] = "auto"  # auto: retrieve for every user turn
    k: int = 3
    min_score: float = 0.3  # hits below this similarity are not injected
    audio: bool = True  # give retrieved reference audio to the model as audio input
    max_chars: int = 2000  # per injected chunk
    transcribe_audio: bool = False  # spoken questions: an ASR pass first gives retrieval its words (costs latency)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "off", "tool-only"):
            raise ConfigError(f"rag.mode must be auto, off or tool-only, not {self.mode!r}")
        if self.k < 1:
            raise ConfigError("rag.k must be >= 1")


@dataclass
class ContextConfig:
    max_context_tokens: int = 16384  # the model's context (max_position_embeddings)
    keep_last_turns: int = 4  # the newest messages are never compacted
    transcribe_audio: bool = True  # ASR pass for user audio that has no transcript when compacting

    def __post_init__(self) -> None:
        if self.max_context_tokens < 64:
            raise ConfigError("context.max_context_tokens must be >= 64")
        if self.keep_last_turns < 1:
            raise ConfigError("context.keep_last_turns must be >= 1")


@dataclass
class AssistantConfig:
    model: str | None = None  # model spec; None = the default hub id
    device: str | None = None
    dtype: str | None = None
    data_dir: str | None = None
    reply: Literal["text", "speech"] = "text"
    voice: str | None = None  # voice bank name; None = the default voice
    token2wav: str | None = None  # token2wav folder; None = the checkpoint's token2wav/
    system_prompt: str | None = None  # replaces the built-in persona + tool instruction + date
    persona: str | None = None  # replaces only the persona line of the built-in system prompt
    language: str = "zh"  # language of the built-in system prompt lines (the official ones are zh)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)  # the tools package's own settings
    tool_loop: ToolLoopConfig = field(default_factory=ToolLoopConfig)
    rag: RagConfig = field(default_factory=RagConfig)
    context: ContextConfig = field(default_factory=ContextConfig)

    def __post_init__(self) -> None:
        if self.reply not in ("text", "speech"):
            raise ConfigError(f"reply must be text or speech, not {self.reply!r}")
        if self.language not in ("zh", "en"):
            raise ConfigError(f"language must be zh or en, not {self.language!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
                env: Mapping[str, str] | None = None) -> AssistantConfig:
    """File (if it exists: `path`, STEPVOICE_CONFIG, or the platform config dir), then env, then overrides.

    An explicitly named file that is missing is an error; the default one may be absent.
    """
    from stepvoice.assistant.paths import config_file

    env = os.environ if env is None else env
    explicit = path or env.get("STEPVOICE_CONFIG")
    file = config_file(explicit) if explicit else config_file(None)
    data: dict[str, Any] = {}
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file}: malformed TOML: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file}: cannot read: {e}") from None
    elif explicit:
        raise ConfigError(f"config file not found: {file}")
    where = str(file)
    merged = _merge({}, data)
    for key, value in _env_settings(env).items():
        _set_dotted(merged, key, value, "environment")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(merged, key, value, "flags")
    return _build(AssistantConfig, merged, where)


def _env_settings(env: Mapping[str, str]) -> dict[str, str]:
    """Settings from `STEPVOICE_*` variables. A name that is not a top-level setting belongs to another
    part of stepvoice (STEPVOICE_TOKEN, STEPVOICE_TEXT_EMBEDDER ...) and is left alone; a `SECTION__KEY`
    name must name a real section and key (a typo there is an error, not silently ignored)."""
    top = {f.name for f in dataclasses.fields(AssistantConfig)}
    out = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        key = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if key.split(".")[0] in top:
            out[key] = value
    return out


def _merge(base: dict, extra: Mapping) -> dict:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = dict(v) if isinstance(v, Mapping) else v
    return base


def _set_dotted(data: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[:-1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def _build(cls: type, data: Mapping[str, Any], where: str, prefix: str = "") -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: [{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        kwargs[name] = _coerce(value, hint, f"{prefix}{name}", where)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:  # a required field missing (e.g. an MCP server without a command)
        raise ConfigError(f"{where}: [{prefix.rstrip('.')}] {e}") from None


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Values from TOML keep their type; strings (env, flags) are converted to the field's type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null") and type(None) in args):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, f"{key}.")
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list")
        return [_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a table")
        return {str(k): _coerce(v, args[1], f"{key}.{k}", where) for k, v in value.items()}
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be a {hint.__name__}, not {value!r}") from None
    return value


def to_toml(config: AssistantConfig) -> str:
    """The effective settings as TOML (for `stepvoice config show`); unset values are commented out."""
    lines: list[str] = []
    _toml_table(config.to_dict(), "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_table(table: Mapping[str, Any], name: str, lines: list[str]) -> None:
    if name:
        lines.extend(["", f"[{name}]"])
    subtables = []
    for key, value in table.items():
        if isinstance(value, Mapping) and value:
            subtables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            subtables.append((key, value))
        elif isinstance(value, Mapping):
            lines.append(f"{key} = {{}}")
        else:
            lines.append(_toml_line(key, value))
    for key, value in subtables:
        full = f"{name}.{key}" if name else key
        if isinstance(value, list):
            for item in value:
                lines.extend(["", f"[[{full}]]"])
                lines.extend(_toml_line(k, v) for k, v in item.items())
        else:
            _toml_table(value, full, lines)


def _toml_line(key: str, value: Any) -> str:
    import json

    if value is None:
        return f"# {key} = (not set)"
    if isinstance(value, bool):
        return f"{key} = {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"{key} = {value}"
    if isinstance(value, list):
        return f"{key} = [{', '.join(json.dumps(v, ensure_ascii=False) for v in value)}]"
    if isinstance(value, Mapping):  # inline table
        items = ", ".join(_toml_line(json.dumps(str(k)), v) for k, v in value.items())
        return f"{key} = {{{items}}}"
    return f"{key} = {json.dumps(str(value), ensure_ascii=False)}"


__all__ = [
    "AssistantConfig", "GenerationConfig", "ToolsConfig", "ToolLoopConfig", "RagConfig", "ContextConfig",
    "load_config", "to_toml", "OFFICIAL_SUMMARY_INSTRUCTION",
]
