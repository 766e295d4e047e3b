"""timbre_rag: switch the speaking voice to the one that best fits a timbre description.

Asks the voice bank handed over in the context (duck-typed: `.find(query)`
returns an object with `.name`, `.description`, `.score`, possibly awaitable)
and tells the host through `context.on_voice_change(name)`.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Annotated

from pydantic import Field

from stepvoice.tools.context import ToolContext
from stepvoice.tools.decorator import ToolOutput, tool
from stepvoice.tools.errors import ToolError


@tool
async def timbre_rag(
    query: Annotated[str, Field(description="a description of the wanted voice timbre, e.g. 'a deep calm male voice'")],
    context: ToolContext,
) -> ToolOutput:
    """Change the speaking voice to the one that best matches a timbre description (timbre only: not emotion, speed or volume)."""
    bank = context.voice_bank
    if bank is None:
        raise ToolError("no voice bank is configured, so the voice cannot be changed; add voices with `stepvoice voices add`")
    if not query.strip():
        raise ToolError("describe the wanted voice (e.g. 'a bright young female voice')")
    if inspect.iscoroutinefunction(bank.find):
        match = await bank.find(query)
    else:  # a search embeds the query (~0.1 s): in a thread, never on the event loop
        match = await asyncio.to_thread(bank.find, query)
        if inspect.isawaitable(match):
            match = await match
    if match is None:
        raise ToolError("the voice bank has no voices to choose from")
    name, description = str(match.name), str(getattr(match, "description", "") or "")
    score = getattr(match, "score", None)
    switched = await context.change_voice(name)
    data = {"name": name, "description": description, "score": score, "switched": switched}
    if not switched:
        return ToolOutput(f"the best matching voice is {name} ({description}), but this session cannot switch voices", data)
    return ToolOutput(f"switched the voice to {name}" + (f": {description}" if description else ""), data)
