"""JSON schemas as the model sees them: pydantic's schema made self-contained and terse.

pydantic writes `title`s everywhere, nested models as `$ref`s into `$defs`,
and `X | None = None` as `anyOf [X, null]` with `default: null`. The model was
trained on plain OpenAI-style function schemas, so: titles go, references are
inlined (kept only for recursive models), and an optional-with-None parameter
is shown as its plain type (leaving it out means None).
"""
from __future__ import annotations

import copy
import json
from typing import Any

_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not")


def model_facing(schema: dict[str, Any]) -> dict[str, Any]:
    """Clean a pydantic `model_json_schema()` of an arguments model into the `parameters` object."""
    defs = schema.get("$defs", {})
    recursive: set[str] = set()
    body = _inline(schema, defs, (), recursive)
    body = _strip(body)
    out: dict[str, Any] = {"type": "object", "properties": body.get("properties", {})}
    if body.get("required"):
        out["required"] = list(body["required"])
    for key, value in body.items():
        if key not in ("type", "properties", "required", "$defs"):
            out[key] = value
    if recursive:
        out["$defs"] = {name: _strip(_inline(defs[name], defs, (name,), set())) for name in sorted(recursive)}
    return out


def _inline(node: Any, defs: dict[str, Any], stack: tuple[str, ...], recursive: set[str]) -> Any:
    if isinstance(node, list):
        return [_inline(x, defs, stack, recursive) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref[len("#/$defs/"):]
        if name in stack or name not in defs:
            recursive.add(name)
            return dict(node)
        target = _inline(copy.deepcopy(defs[name]), defs, stack + (name,), recursive)
        siblings = {k: _inline(v, defs, stack, recursive) for k, v in node.items() if k != "$ref"}
        return {**target, **siblings}
    return {k: _inline(v, defs, stack, recursive) for k, v in node.items() if k != "$defs"}


def _strip(node: Any) -> Any:
    """Drop titles and collapse optional-None, walking only schema positions (not property names)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _collapse_optional(_strip(sub)) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_strip(v) for v in value]
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = _strip(value)
        else:
            out[key] = value
    if "type" in out:  # read "type" first, as hand-written schemas do
        out = {"type": out.pop("type"), **out}
    return out


def _collapse_optional(prop: dict[str, Any]) -> dict[str, Any]:
    options = prop.get("anyOf")
    if not (isinstance(options, list) and len(options) == 2 and "default" in prop and prop["default"] is None):
        return prop
    rest = [o for o in options if o != {"type": "null"}]
    if len(rest) != 1:
        return prop
    merged = {**rest[0], **{k: v for k, v in prop.items() if k not in ("anyOf", "default")}}
    return {"type": merged.pop("type"), **merged} if "type" in merged else merged


def signature(name: str, parameters: dict[str, Any]) -> str:
    """A one-line reminder of a tool's arguments for error messages: `get_weather(location: string)`."""
    props = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    parts = []
    for pname, prop in props.items():
        kind = _kind(prop)
        if pname in required:
            parts.append(f"{pname}: {kind}")
        elif "default" in prop:
            parts.append(f"{pname}?: {kind} = {json.dumps(prop['default'], ensure_ascii=False)}")
        else:
            parts.append(f"{pname}?: {kind}")
    return f"{name}({', '.join(parts)})"


def _kind(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"], ensure_ascii=False)
    if "anyOf" in prop:
        return " | ".join(_kind(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array" and isinstance(prop.get("items"), dict):
        return f"list of {_kind(prop['items'])}"
    return kind if isinstance(kind, str) else " | ".join(kind)
