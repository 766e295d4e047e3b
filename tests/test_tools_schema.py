"""Schemas the model sees, for many signatures, against hand-written JSON."""
from __future__ import annotations

import json
from typing import Annotated, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from stepvoice.tools import ToolContext, ToolDefinitionError, tool


class Address(BaseModel):
    street: str
    zip_code: Optional[int] = None


class Stop(BaseModel):
    """A stop on a route."""

    city: str = Field(description="city name")
    nights: int = 1


class TreeNode(BaseModel):
    label: str
    children: list["TreeNode"] = []


def params(t) -> dict:
    return t.schema()["function"]["parameters"]


def test_plain_required_string_and_docstring_description():
    @tool
    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    assert lookup.schema() == {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }


def test_optional_argument_with_a_default():
    @tool
    def find(query: str, limit: int = 5) -> str:
        """Find."""
        return query

    assert params(find) == {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "default": 5}},
        "required": ["query"],
    }


def test_optional_none_is_shown_as_its_plain_type_and_not_required():
    @tool
    def note(text: str | None = None, level: Optional[float] = None) -> str:
        """Note."""
        return ""

    assert params(note) == {
        "type": "object",
        "properties": {"text": {"type": "string"}, "level": {"type": "number"}},
    }


def test_literal_becomes_an_enum():
    @tool
    def convert(unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
        """Convert."""
        return unit

    assert params(convert) == {
        "type": "object",
        "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
    }


def test_lists_and_dicts():
    @tool
    def tag(tags: list[str], weights: dict[str, int]) -> str:
        """Tag."""
        return ""

    assert params(tag) == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "weights": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "required": ["tags", "weights"],
    }


def test_nested_model_is_inlined_without_titles_or_refs():
    @tool
    def ship(to: Address, stops: list[Stop]) -> str:
        """Ship a parcel."""
        return ""

    p = params(ship)
    assert p == {
        "type": "object",
        "properties": {
            "to": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip_code": {"type": "integer"}},
                "required": ["street"],
            },
            "stops": {
                "type": "array",
                "items": {
                    "type": "object",
                    "description": "A stop on a route.",
                    "properties": {
                        "city": {"type": "string", "description": "city name"},
                        "nights": {"type": "integer", "default": 1},
                    },
                    "required": ["city"],
                },
            },
        },
        "required": ["to", "stops"],
    }
    assert "$ref" not in json.dumps(p) and "title" not in json.dumps(p)


def test_annotated_descriptions_and_constraints_are_kept():
    @tool
    def pick(
        count: Annotated[int, Field(description="how many", ge=1, le=10)],
        word: Annotated[str, Field(description="a word", min_length=2)] = "hi",
    ) -> str:
        """Pick."""
        return ""

    assert params(pick) == {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "description": "how many", "minimum": 1, "maximum": 10},
            "word": {"type": "string", "description": "a word", "minLength": 2, "default": "hi"},
        },
        "required": ["count"],
    }


def test_async_function_and_injected_context_never_appears():
    @tool
    async def scale(x: float, context: ToolContext, factor: float = 2.0) -> float:
        """Scale a number."""
        return x * factor

    assert scale.is_async and scale.context_param == "context"
    assert params(scale) == {
        "type": "object",
        "properties": {"x": {"type": "number"}, "factor": {"type": "number", "default": 2.0}},
        "required": ["x"],
    }


def test_optional_context_is_also_hidden():
    @tool
    def whoami(ctx: Optional[ToolContext] = None) -> str:
        """Who am I."""
        return ""

    assert whoami.context_param == "ctx"
    assert params(whoami) == {"type": "object", "properties": {}}


def test_google_docstring_args_become_parameter_descriptions():
    @tool
    def book(room: str, nights: int = 1, breakfast: bool = False) -> str:
        """Book a hotel room.

        Pays at the desk.

        Args:
            room: the room type,
                e.g. single or double
            nights (int): how many nights
            breakfast: whether breakfast is included

        Returns:
            a booking reference
        """
        return ""

    s = book.schema()["function"]
    assert s["description"] == "Book a hotel room.\n\nPays at the desk."
    assert s["parameters"] == {
        "type": "object",
        "properties": {
            "room": {"type": "string", "description": "the room type, e.g. single or double"},
            "nights": {"type": "integer", "default": 1, "description": "how many nights"},
            "breakfast": {"type": "boolean", "default": False, "description": "whether breakfast is included"},
        },
        "required": ["room"],
    }


def test_name_description_and_timeout_options():
    @tool(name="weather-now", description="Current weather.", timeout=3)
    def w(city: str) -> str:
        return city

    assert w.name == "weather-now" and w.timeout_s == 3
    assert w.schema()["function"]["description"] == "Current weather."
    assert w("Oslo") == "Oslo"  # the decorated function still works as a function


def test_no_arguments():
    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    assert params(ping) == {"type": "object", "properties": {}}


def test_recursive_model_keeps_its_definition():
    @tool
    def draw(tree: TreeNode) -> str:
        """Draw a tree."""
        return ""

    node = {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/TreeNode"}, "default": []},
        },
        "required": ["label"],
    }
    # Inlined once; the self-reference below stays a $ref into the kept definition.
    assert params(draw) == {
        "type": "object",
        "properties": {"tree": node},
        "required": ["tree"],
        "$defs": {"TreeNode": node},
    }


def test_a_property_called_title_is_kept():
    @tool
    def publish(title: str) -> str:
        """Publish."""
        return title

    assert params(publish) == {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


@pytest.mark.parametrize(
    "define, words",
    [
        (lambda: tool(lambda *args: None), "*args"),
        (lambda: tool(name="bad name!")(lambda: None), "invalid tool name"),
        (lambda: tool(timeout=-1), "timeout"),
        (lambda: tool(lambda x: None, name="x\nfunction"), "invalid tool name"),
    ],
)
def test_bad_definitions_are_refused_clearly(define, words):
    with pytest.raises(ToolDefinitionError) as e:
        define()
    assert words in str(e.value)
