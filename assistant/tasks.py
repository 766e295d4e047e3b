"""Scripted tasks for `stepvoice run TASKS.yaml`: the file format, read with line/column locations.

    model: replies.yaml               # optional (else --model / config); a .yaml file = a reply script;
                                      # paths are relative to this file
    defaults: {reply: text, tools: true}
    tasks:
      - name: weather
        reply: speech                 # text | speech
        voice: deep                   # a voice bank name
        style: slow                   # how it speaks: slow, fast, whisper, excited, sad, ... or free text
        task: chat                    # chat | asr | translate | caption | paralinguistic | think
        target_lang: en               # for translate
        tools: [get_weather]          # true (all), false (none) or a list of names
        turns:
          - text: What's the weather in Paris?
          - audio: clips/question.wav
            text: an optional instruction sent with the audio
            style: whisper                       # this turn only
            expect: [{contains: Paris}]          # checked on this turn's answer
        expect:                       # checked on the whole task
          - tool: get_weather
            arguments: {location: Paris}        # a subset; strings compared case-insensitively
          - contains: sunny
          - not_contains: sorry

Every mistake is one `ConfigError` naming the file, line and column.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stepvoice.assistant.presets import TASKS
from stepvoice.engine.errors import ConfigError

TASK_KEYS = {"name", "reply", "voice", "task", "target_lang", "tools", "turns", "expect", "style"}
TURN_KEYS = {"text", "audio", "expect", "style"}
EXPECT_KEYS = {"tool", "arguments", "contains", "not_contains"}
FILE_KEYS = {"model", "defaults", "tasks"}


@dataclass(frozen=True)
class Expectation:
    tool: str | None = None  # a call of this tool ...
    arguments: dict[str, Any] = field(default_factory=dict)  # ... whose arguments include these
    contains: str | None = None  # the answer contains this phrase (case-insensitive)
    not_contains: str | None = None
    where: str = ""  # file:line:column, for reports

    def describe(self) -> str:
        if self.tool is not None:
            return f"a {self.tool} call" + (f" with {self.arguments}" if self.arguments else "")
        if self.contains is not None:
            return f"the answer contains {self.contains!r}"
        return f"the answer does not contain {self.not_contains!r}"


@dataclass(frozen=True)
class Turn:
    text: str | None = None
    audio: Path | None = None
    expect: tuple[Expectation, ...] = ()
    style: str | None = None  # this turn only (assistant.style)


@dataclass(frozen=True)
class Task:
    name: str
    turns: tuple[Turn, ...]
    reply: str = "text"
    voice: str | None = None
    task: str = "chat"
    target_lang: str | None = None
    tools: bool | tuple[str, ...] = True
    expect: tuple[Expectation, ...] = ()
    style: str | None = None  # the whole task (assistant.style); a turn's own style wins


@dataclass(frozen=True)
class TaskFile:
    path: Path
    tasks: tuple[Task, ...]
    model: str | None = None


class _Located:
    """Python values of a YAML document plus the position of every node, by path."""

    def __init__(self, path: Path):
        self.path = path
        self.marks: dict[tuple, tuple[int, int]] = {}

    def where(self, at: tuple) -> str:
        while at not in self.marks and at:
            at = at[:-1]
        line, col = self.marks.get(at, (1, 1))
        return f"{self.path}:{line}:{col}"

    def fail(self, at: tuple, message: str) -> ConfigError:
        return ConfigError(f"{self.where(at)}: {message}")

    def value(self, node: yaml.Node, at: tuple = ()) -> Any:
        self.marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out = {}
            for k, v in node.value:
                key = str(k.value)
                out[key] = self.value(v, at + (key,))
                self.marks[at + (key,)] = (k.start_mark.line + 1, k.start_mark.column + 1)  # report at the key
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(v, at + (i,)) for i, v in enumerate(node.value)]
        return yaml.SafeLoader("").construct_object(node)  # a scalar: int, float, bool, null or str


def load_tasks(path: str | Path) -> TaskFile:
    """Read and check a tasks file; paths inside it are resolved relative to it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"tasks file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}{loc}: malformed YAML: {problem}") from None
    if node is None:
        raise ConfigError(f"{p}: the tasks file is empty")
    doc = _Located(p)
    data = doc.value(node)
    return _task_file(data, doc, p)


def _task_file(data: Any, doc: _Located, p: Path) -> TaskFile:
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict):
        raise doc.fail((), "expected a mapping with a 'tasks' list")
    _known(data, FILE_KEYS, (), doc)
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise doc.fail(("tasks",), "'tasks' must be a non-empty list")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise doc.fail(("defaults",), "'defaults' must be a mapping")
    _known(defaults, TASK_KEYS - {"name", "turns"}, ("defaults",), doc)
    model = data.get("model")
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise doc.fail(("model",), "'model' must be a model spec string")
        model = _relative_model(model, p.parent)
    out = []
    names: set[str] = set()
    for i, t in enumerate(tasks):
        if not isinstance(t, dict):
            raise doc.fail(("tasks", i), "a task must be a mapping")
        task = _task({**defaults, **t}, ("tasks", i), doc, p.parent, i)
        if task.name in names:
            raise doc.fail(("tasks", i, "name"), f"two tasks are named {task.name!r}")
        names.add(task.name)
        out.append(task)
    return TaskFile(p, tuple(out), model)


def _relative_model(spec: str, base: Path) -> str:
    if spec.startswith("scripted:"):
        f = Path(spec[len("scripted:"):]).expanduser()
        return "scripted:" + str(f if f.is_absolute() else base / f)
    local = Path(spec).expanduser()
    if not local.is_absolute() and (base / local).exists():
        local = base / local
    if local.suffix.lower() in (".yaml", ".yml") and local.is_file():
        return f"scripted:{local}"  # a reply script next to the tasks
    return str(local) if local.exists() else spec


def _known(d: dict, keys: set[str], at: tuple, doc: _Located) -> None:
    for k in d:
        if k not in keys:
            raise doc.fail(at + (k,), f"unknown key {k!r} (expected one of {', '.join(sorted(keys))})")


def _task(t: dict, at: tuple, doc: _Located, base: Path, index: int) -> Task:
    _known(t, TASK_KEYS, at, doc)
    name = t.get("name", f"task-{index + 1}")
    if not isinstance(name, (str, int)) or not str(name).strip():
        raise doc.fail(at + ("name",), "'name' must be a non-empty string")
    reply = t.get("reply", "text")
    if reply not in ("text", "speech"):
        raise doc.fail(at + ("reply",), f"'reply' must be text or speech, not {reply!r}")
    preset = t.get("task", "chat")
    if preset not in TASKS:
        raise doc.fail(at + ("task",), f"'task' must be one of {', '.join(TASKS)}, not {preset!r}")
    target = t.get("target_lang")
    if preset == "translate" and not target:
        raise doc.fail(at + ("task",), "the translate task needs 'target_lang'")
    voice = t.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise doc.fail(at + ("voice",), "'voice' must be a voice name")
    tools = t.get("tools", True)
    if isinstance(tools, list):
        if not all(isinstance(x, str) for x in tools):
            raise doc.fail(at + ("tools",), "'tools' must be true, false or a list of tool names")
        tools = tuple(tools)
    elif not isinstance(tools, bool):
        raise doc.fail(at + ("tools",), "'tools' must be true, false or a list of tool names")
    turns = t.get("turns")
    if not isinstance(turns, list) or not turns:
        raise doc.fail(at + ("turns",) if "turns" in t else at, "a task needs a non-empty 'turns' list")
    return Task(str(name), tuple(_turn(x, at + ("turns", j), doc, base) for j, x in enumerate(turns)), reply, voice,
                preset, str(target) if target else None, tools, _expectations(t.get("expect"), at + ("expect",), doc),
                _style(t, at, doc))


def _style(x: dict, at: tuple, doc: _Located) -> str | None:
    style = x.get("style")
    if style is not None and (not isinstance(style, str) or not style.strip()):
        raise doc.fail(at + ("style",), "'style' must be a preset name (slow, whisper, ...) or a description")
    return style


def _turn(x: Any, at: tuple, doc: _Located, base: Path) -> Turn:
    if isinstance(x, str):
        x = {"text": x}
    if not isinstance(x, dict):
        raise doc.fail(at, "a turn must be a string or a mapping with 'text' and/or 'audio'")
    _known(x, TURN_KEYS, at, doc)
    text, audio = x.get("text"), x.get("audio")
    if text is not None and not isinstance(text, str):
        raise doc.fail(at + ("text",), "'text' must be a string")
    if audio is not None and not isinstance(audio, str):
        raise doc.fail(at + ("audio",), "'audio' must be a file path")
    if not (text and text.strip()) and not audio:
        raise doc.fail(at, "a turn needs 'text' or 'audio'")
    path = None
    if audio:
        path = Path(audio).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise doc.fail(at + ("audio",), f"audio file not found: {path}")
    return Turn(text, path, _expectations(x.get("expect"), at + ("expect",), doc), _style(x, at, doc))


def _expectations(raw: Any, at: tuple, doc: _Located) -> tuple[Expectation, ...]:
    if raw is None:
        return ()
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise doc.fail(at, "'expect' must be a list of expectations")
    out = []
    for i, e in enumerate(raw):
        here = at + (i,)
        if not isinstance(e, dict):
            raise doc.fail(here, "an expectation is a mapping: {tool: NAME, arguments: {...}} or {contains: PHRASE}")
        _known(e, EXPECT_KEYS, here, doc)
        kinds = [k for k in ("tool", "contains", "not_contains") if k in e]
        if len(kinds) != 1:
            raise doc.fail(here, "an expectation has exactly one of 'tool', 'contains', 'not_contains'")
        args = e.get("arguments", {})
        if "arguments" in e and "tool" not in e:
            raise doc.fail(here + ("arguments",), "'arguments' goes with 'tool'")
        if not isinstance(args, dict):
            raise doc.fail(here + ("arguments",), "'arguments' must be a mapping")
        for k in ("tool", "contains", "not_contains"):
            if k in e and (not isinstance(e[k], (str, int, float)) or not str(e[k]).strip()):
                raise doc.fail(here + (k,), f"'{k}' must be a non-empty string")
        out.append(Expectation(str(e["tool"]) if "tool" in e else None, dict(args),
                               str(e["contains"]) if "contains" in e else None,
                               str(e["not_contains"]) if "not_contains" in e else None, doc.where(here)))
    return tuple(out)
