"""The four tools Step-Audio 2 was trained to call, with their trained names and parameters.

Registered through the `stepvoice.tools` entry point `builtins` (see
pyproject.toml), the same door third-party plugins use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from stepvoice.tools.builtins.datetime_tool import get_date_time
from stepvoice.tools.builtins.search import search
from stepvoice.tools.builtins.timbre_rag import timbre_rag
from stepvoice.tools.builtins.weather import get_weather

if TYPE_CHECKING:
    from stepvoice.tools.registry import ToolRegistry

BUILTINS = (search, get_weather, get_date_time, timbre_rag)


def register(registry: "ToolRegistry") -> None:
    for t in BUILTINS:
        registry.register(t)
