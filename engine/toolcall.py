"""Tool calls in model text: `<tool_call>function\\n{name}\\n{json}</tool_call>`.

`parse_tool_calls(text)` returns the text outside the calls (verbatim, nothing
lost) and one `ToolCall` per call. It never raises: near-JSON arguments are
repaired (json-repair), arguments that cannot be recovered, or that are not a
JSON object, are reported in `ToolCall.error`. A closing tag inside a JSON
string does not end a call; a call left open at the end of the text is still
parsed (with an error if its arguments were cut off).

`scan_call_end` is shared with the streaming decoder, which must decide when a
call closes while tokens are still arriving.
"""
from __future__ import annotations

import json
import re
from typing import Any

from stepvoice.engine.events import ToolCall

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_TYPE_LINE = re.compile(r"\s*function[ \t]*(\r?\n|$)")


def scan_call_end(text: str, start: int) -> tuple[int, str]:
    """Where the call whose body starts at `start` ends: (index, "close") at a
    `</tool_call>` outside JSON strings, (index, "open") at a new `<tool_call>`
    outside strings (the call was never closed), or (-1, "") if neither yet."""
    in_string = escaped = False
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "<":
            if text.startswith(CLOSE, i):
                return i, "close"
            if text.startswith(OPEN, i):
                return i, "open"
        i += 1
    return -1, ""


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _parse_arguments(text: str) -> tuple[dict[str, Any], str | None, bool]:
    """(arguments, error, repaired) from the argument text of one call."""
    text = text.strip()
    if not text:
        return {}, None, False
    repaired = False
    try:
        value = json.loads(text)
    except ValueError:
        import json_repair

        repaired = True
        try:
            value = json_repair.loads(text)
        except Exception as e:  # json-repair can raise on pathological input
            return {}, f"could not parse the arguments as JSON ({type(e).__name__})", True
        if value == "" and text not in ('""', "''"):
            return {}, f"could not parse the arguments as JSON: {text[:60]!r}", True
    if isinstance(value, str):  # arguments encoded twice: '"{\"q\": 1}"'
        try:
            inner = json.loads(value)
        except ValueError:
            inner = None
        if isinstance(inner, dict):
            value = inner
    if not isinstance(value, dict):
        return {}, f"arguments must be a JSON object, got {_kind(value)}", repaired
    return value, None, repaired


def parse_call(body: str, raw: str = "", closed: bool = True) -> ToolCall:
    """One call from the text between `<tool_call>` and `</tool_call>`."""
    raw = raw or f"{OPEN}{body}{CLOSE if closed else ''}"
    m = _TYPE_LINE.match(body)
    rest = body[m.end():] if m else body
    stripped = rest.lstrip()
    name, args_text = "", ""
    if stripped.startswith("{"):  # Qwen-style {"name": ..., "arguments": {...}}
        obj, err, _ = _parse_arguments(stripped)
        if err is None and isinstance(obj.get("name"), str):
            name = obj["name"].strip()
            args = obj.get("arguments", obj.get("parameters", {}))
            args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        else:
            args_text = stripped
    else:
        first_line, _, after = stripped.partition("\n")
        brace = first_line.find("{")
        if brace >= 0:  # name and arguments on one line
            name, args_text = first_line[:brace].strip(), first_line[brace:] + ("\n" + after if after else "")
        else:
            name, args_text = first_line.strip(), after
    arguments, error, repaired = _parse_arguments(args_text)
    if not name:
        error = "tool call has no function name" + (f"; {error}" if error else "")
    elif not closed and repaired and error is None:
        error = "tool call was cut off before </tool_call>; its arguments may be incomplete"
    return ToolCall(name=name, arguments=arguments, raw=raw, error=error)


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """(text outside the calls, calls in order). Never raises."""
    outside: list[str] = []
    calls: list[ToolCall] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            outside.append(text[pos:])
            break
        outside.append(text[pos:start])
        body_start = start + len(OPEN)
        end, kind = scan_call_end(text, body_start)
        if end < 0:
            # an unbalanced quote hides every close from the string-aware scan: take the first one
            end = text.find(CLOSE, body_start)
            kind = "close" if end >= 0 else ""
        if end < 0:  # open until the end of the text
            calls.append(parse_call(text[body_start:], raw=text[start:], closed=False))
            break
        if kind == "open":  # a new call began before this one closed
            calls.append(parse_call(text[body_start:end], raw=text[start:end], closed=False))
            pos = end
            continue
        calls.append(parse_call(text[body_start:end], raw=text[start:end + len(CLOSE)]))
        pos = end + len(CLOSE)
    return "".join(outside), calls


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The text the model writes for a call (for history and tests)."""
    return f"{OPEN}function\n{name}\n{json.dumps(arguments, ensure_ascii=False)}{CLOSE}"


__all__ = ["parse_tool_calls", "parse_call", "scan_call_end", "format_tool_call", "OPEN", "CLOSE"]
