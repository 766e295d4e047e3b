"""Assistant settings: one pydantic model, read from a TOML file, then `STEPVOICE_*` variables, then flags.

The classes below are the whole schema; the TOML file mirrors them section by section:

    model = "stepfun-ai/Step-Audio-2-mini"
    reply = "speech"
    voice = "default"

    [generation]            # the engine's own GenerationOptions
    temperature = 0.7

    [tools]                 # the tools package's settings (tools.config.ToolsConfig)
    timeout_s = 10
    tools_modules = ["my_tools.py"]

    [tool_loop]
    max_rounds = 3

    [rag]
    mode = "auto"

Environment variables use the upper-cased key, with `__` between a section and its field:
`STEPVOICE_MODEL`, `STEPVOICE_TOOLS__TIMEOUT_S=5`, `STEPVOICE_RAG__MODE=off`. Lists in the
environment are comma separated (or JSON). Overrides (from flags) are a dict of dotted keys:
`{"tools.timeout_s": 5}`; a None value means "flag not given".

Adding a setting is one annotated line with its default in the class it belongs to
(`compile: bool = False` on AssistantConfig); pydantic checks its type and the env name follows.
"""
from __future__ import annotations

import contextvars
import json
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from stepvoice.engine.errors import ConfigError
from stepvoice.engine.options import GenerationOptions
from stepvoice.tools.config import ToolsConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ENV_PREFIX = "STEPVOICE_"
# Variables with the prefix that are not settings (data_dir comes from STEPVOICE_HOME).
ENV_NOT_SETTINGS = frozenset({"STEPVOICE_HOME", "STEPVOICE_CONFIG", "STEPVOICE_DEBUG"})

# The official example's instruction appended after tool results.
OFFICIAL_SUMMARY_INSTRUCTION = "\n\n\n请用口语化形式总结检索结果，简短地回答用户的问题。"

# The generation section is the engine's options themselves (one rule set); the old name stays importable.
GenerationConfig = GenerationOptions


class Section(BaseModel):
    """A settings table: unknown keys are errors, assignments are checked."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ToolLoopConfig(Section):
    """How the session runs the model's calls (the tools themselves are set in `[tools]`)."""

    enabled: bool = True
    max_rounds: int = Field(4, ge=0)  # tool rounds per user turn; further calls are answered "limit reached"
    timeout_s: float = Field(30.0, gt=0)  # the session's own limit per call, above the tool's own timeout
    summary_instruction: str = OFFICIAL_SUMMARY_INSTRUCTION  # appended after the last result of a round


class RagConfig(Section):
    mode: Literal["auto", "off", "tool-only"] = "auto"  # auto: retrieve for every user turn
    k: int = Field(3, ge=1)
    min_score: float = 0.3  # hits below this similarity are not injected
    audio: bool = True  # give retrieved reference audio to the model as audio input
    max_chars: int = 2000  # per injected chunk
    transcribe_audio: bool = False  # spoken questions: an ASR pass first gives retrieval its words (costs latency)


class ContextConfig(Section):
    max_context_tokens: int = Field(16384, ge=64)  # the model's context (max_position_embeddings)
    keep_last_turns: int = Field(4, ge=1)  # the newest messages are never compacted
    transcribe_audio: bool = True  # ASR pass for user audio that has no transcript when compacting


def _env_lists(cls: type, section: str) -> Any:
    """Before-validator for a dataclass section: list fields given as one string (env, flags) are split
    (or read as JSON), table fields given as a string are read as JSON."""
    def split(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        hints = typing.get_type_hints(cls)
        out = dict(value)
        for key, item in value.items():
            origin = typing.get_origin(hints.get(key))
            if not isinstance(item, str) or origin not in (list, dict):
                continue
            text = item.strip()
            if text.startswith(("[", "{")):
                try:
                    out[key] = json.loads(text)
                except ValueError:
                    raise ConfigError(f"{section}.{key}: malformed JSON: {text[:60]}") from None
            elif origin is list:
                out[key] = [v.strip() for v in text.split(",") if v.strip()]
        return out
    return BeforeValidator(split)


class AssistantConfig(Section):
    model: str | None = None  # model spec; None = the default hub id
    device: str | None = None
    dtype: str | None = None
    compile: Literal["auto", "on", "off"] = "auto"  # compiled decode step (#11): auto = on CUDA
    quantize: Literal["none", "int8", "int4"] = "none"  # weight-only quantization of the LLM (#11)
    t2w_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # token2wav flow precision (engine.token2wav.precision)
    t2w_steps: int = Field(10, ge=1)  # token2wav Euler steps (fewer: faster, further from the reference)
    data_dir: str | None = None
    reply: Literal["text", "speech"] = "text"
    voice: str | None = None  # voice bank name; None = the default voice
    token2wav: str | None = None  # token2wav folder; None = the checkpoint's token2wav/
    system_prompt: str | None = None  # replaces the built-in persona + tool instruction + date
    persona: str | None = None  # replaces only the persona line of the built-in system prompt
    language: Literal["zh", "en"] = "zh"  # language of the built-in system prompt lines (the official ones are zh)
    allow_origins: list[str] = Field(default_factory=list)  # `serve`: browser origins besides its own page
    prefix_cache: bool = True  # keep the KV cache across turns; run only ids after the common prefix (#12)
    style: str | None = None  # how the assistant speaks: a preset (slow, whisper, ...) or free text (#12)
    speculate: bool = True  # voice loop / server VAD: start the reply silently at a short pause (#12)
    speculate_pause_ms: int = Field(200, ge=20)  # that short pause; the endpoint (hangover) still commits (#12)
    generation: GenerationOptions = Field(default_factory=GenerationOptions)
    tools: Annotated[ToolsConfig, _env_lists(ToolsConfig, "tools")] = Field(default_factory=ToolsConfig)
    tool_loop: ToolLoopConfig = Field(default_factory=ToolLoopConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# What one load_config call reads: (toml data, environment). A context variable keeps concurrent loads apart.
_SOURCES: contextvars.ContextVar[tuple[dict, Mapping[str, str]]] = contextvars.ContextVar("stepvoice_settings")


class _Environment(EnvSettingsSource):
    """STEPVOICE_* from the mapping given to load_config (os.environ by default)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _SOURCES.get()[1]
        return {k.lower(): v for k, v in env.items()
                if k.upper().startswith(ENV_PREFIX) and k.upper() not in ENV_NOT_SETTINGS}

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        """`a,b` is a list too (JSON otherwise), as for the sections' lists."""
        if isinstance(value, str) and typing.get_origin(field.annotation) is list and not value.lstrip().startswith("["):
            return [v.strip() for v in value.split(",") if v.strip()]
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            raise ConfigError(f"{field_name}: malformed JSON: {str(value)[:60]}") from None


class _TomlData(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _SOURCES.get()[0]


class _Settings(AssistantConfig, BaseSettings):
    """AssistantConfig filled from the sources; flags (init kwargs) > environment > TOML file > defaults."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      case_sensitive=False, validate_default=False)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, _Environment(settings_cls), _TomlData(settings_cls))


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
    flags: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(flags, key, value)
    where = str(file) if file.is_file() else "settings"
    token = _SOURCES.set((data, env))
    try:
        settings = _Settings(**flags)
    except ValidationError as e:
        raise ConfigError(f"{where}: {_first_error(e)}") from None
    except (ConfigError, SettingsError) as e:  # a dataclass section's own check (tools), an unreadable variable
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:  # a required field missing (e.g. an MCP server without a command)
        raise ConfigError(f"{where}: {e}") from None
    finally:
        _SOURCES.reset(token)
    return AssistantConfig.model_construct(_fields_set=settings.model_fields_set,
                                           **{name: getattr(settings, name) for name in AssistantConfig.model_fields})


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"flags: {'.'.join(parts[:-1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def _first_error(e: ValidationError) -> str:
    """The first problem as `key: what`, one line."""
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown setting {key}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key}: {msg}, not {err['input']!r}" if not isinstance(err["input"], Mapping) else f"{key}: {msg}"


def to_toml(config: AssistantConfig) -> str:
    """The effective settings as TOML (for `stepvoice config show`); unset values are listed as comments."""
    import tomli_w

    data = config.to_dict()
    unset: list[str] = []
    clean = _drop_none(data, "", unset)
    head = f"# not set: {', '.join(unset)}\n" if unset else ""
    return head + tomli_w.dumps(clean, multiline_strings=False)


def _drop_none(table: Mapping[str, Any], prefix: str, unset: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if value is None:
            unset.append(prefix + key)
        elif isinstance(value, Mapping):
            out[key] = _drop_none(value, f"{prefix}{key}.", unset)
        elif isinstance(value, list):
            out[key] = [_drop_none(v, f"{prefix}{key}[].", []) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


__all__ = [
    "AssistantConfig", "GenerationConfig", "ToolsConfig", "ToolLoopConfig", "RagConfig", "ContextConfig",
    "Section", "load_config", "to_toml", "OFFICIAL_SUMMARY_INSTRUCTION",
]
