"""`@tool`: a typed function (sync or async) becomes a `Tool` the model can call.

Name from the function (overridable), description from the docstring,
argument schema from the type hints via pydantic `create_model`
(`Annotated[..., Field(...)]` descriptions and constraints kept, `Literal` as
enums, nested models inlined). A parameter annotated `ToolContext` receives
the session's services and is hidden from the schema.
"""
from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import ConfigDict, ValidationError, create_model

from stepvoice.tools.context import ToolContext
from stepvoice.tools.errors import InvalidArguments, ToolDefinitionError
from stepvoice.tools.schema import model_facing

# OpenAI's rule for function names; the model writes the name on its own line.
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION_RE = re.compile(r"^(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE_RE = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class ToolOutput:
    """A result with both a text for the model and structured `data` for programs."""

    text: str
    data: Any = None


class Tool:
    """Something the model can call. Subclasses implement `validate` and `invoke`."""

    def __init__(self, name: str, description: str, parameters: dict[str, Any], *,
                 timeout_s: float | None = None, source: str = ""):
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ToolDefinitionError(f"invalid tool name {name!r}: use 1-64 letters, digits, '_' or '-'")
        self.name = name
        self.description = description
        self.parameters = parameters
        self.timeout_s = timeout_s
        self.source = source

    def schema(self) -> dict[str, Any]:
        """The OpenAI-form declaration that goes into the `tool_json_schemas` turn."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Checked (and coerced) keyword arguments; raises `InvalidArguments`."""
        raise NotImplementedError

    async def invoke(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} from {self.source or '?'}>"


class FunctionTool(Tool):
    """A tool made from a Python function by `@tool`. Calling it calls the function."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 timeout_s: float | None = None, source: str = ""):
        if not callable(fn):
            raise ToolDefinitionError(f"@tool needs a function, not {type(fn).__name__}")
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        doc_text, arg_docs = parse_docstring(inspect.getdoc(fn) or "")
        tool_name = name or getattr(fn, "__name__", "")
        self.context_param, self.args_model = _arguments_model(fn, tool_name)
        parameters = model_facing(self.args_model.model_json_schema())
        for pname, prop in parameters["properties"].items():
            if "description" not in prop and pname in arg_docs:
                prop["description"] = arg_docs[pname]
        super().__init__(tool_name, description if description is not None else doc_text, parameters,
                         timeout_s=timeout_s, source=source or getattr(fn, "__module__", "") or "")
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def validate(self, arguments: Any) -> dict[str, Any]:
        if not isinstance(arguments, dict):
            raise InvalidArguments([f"arguments must be a JSON object, not {type(arguments).__name__}"])
        try:
            model = self.args_model.model_validate(arguments)
        except ValidationError as e:
            raise InvalidArguments([_describe(err) for err in e.errors()]) from None
        return {field: getattr(model, field) for field in type(model).model_fields}

    async def invoke(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        kwargs = dict(arguments)
        if self.context_param:
            kwargs[self.context_param] = context
        if self.is_async:
            return await self.fn(**kwargs)
        # Sync tools run in the tools' own bounded thread pool (tools.pool) so a slow
        # one cannot stall audio nor take the threads model steps use; on timeout the
        # thread finishes in the background and its result is dropped.
        return await context.tool_pool().run(self.fn, **kwargs)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         timeout: float | None = None) -> Any:
    """Make a tool of a function: `@tool`, or `@tool(name=..., description=..., timeout=seconds)`."""
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ToolDefinitionError(f"@tool timeout must be a number of seconds > 0, not {timeout!r}")

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(f, name=name, description=description, timeout_s=timeout)

    return wrap(fn) if fn is not None else wrap


def _arguments_model(fn: Callable[..., Any], tool_name: str) -> tuple[str | None, type]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # NameError for a forward reference that cannot be resolved
        raise ToolDefinitionError(f"tool {tool_name}: cannot resolve its type hints ({e})") from None
    context_param = None
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {tool_name}: *{p.name} is not allowed; name every parameter")
        if p.kind is p.POSITIONAL_ONLY:
            raise ToolDefinitionError(f"tool {tool_name}: positional-only parameter {p.name} cannot be passed by name")
        hint = hints.get(p.name, Any)
        if _is_context(hint):
            context_param = p.name
            continue
        fields[p.name] = (hint, ... if p.default is p.empty else p.default)
    try:
        model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="ignore"), **fields)
        model.model_json_schema()
    except Exception as e:  # pydantic refuses types it cannot describe
        raise ToolDefinitionError(f"tool {tool_name}: cannot build an argument schema ({e})") from None
    return context_param, model


def _is_context(hint: Any) -> bool:
    if hint is ToolContext:
        return True
    args = typing.get_args(hint)
    return bool(args) and any(a is ToolContext for a in args) and all(a in (ToolContext, type(None)) for a in args)


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(x) for x in err.get("loc", ())) or "arguments"
    msg = err.get("msg", "invalid")
    if err.get("type") == "missing":
        return f"{loc}: missing (required)"
    got = err.get("input")
    shown = repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{loc}: {msg[:1].lower() + msg[1:]} (got {shown})"


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the description and per-argument texts."""
    description: list[str] = []
    args: dict[str, str] = {}
    section = None
    current = None
    args_indent = 0
    for line in doc.splitlines():
        stripped = line.strip()
        m = _SECTION_RE.match(stripped)
        if m and not line.startswith((" ", "\t")):
            section = m.group(1)
            current = None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters", "Params") and stripped:
            arg = _ARG_LINE_RE.match(stripped)
            indent = len(line) - len(line.lstrip())
            if arg and (current is None or indent <= args_indent):
                current = arg.group(1).lstrip("*")
                args_indent = indent
                args[current] = arg.group(3).strip()
            elif current is not None:
                args[current] = (args[current] + " " + stripped).strip()
    return "\n".join(description).strip(), args
