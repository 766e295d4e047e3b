"""Sample plugin: a register(registry) entry point adding two tools."""
from __future__ import annotations

import random
from typing import Annotated, Literal

from pydantic import Field

from stepvoice.tools import ToolContext, ToolError, tool


@tool
def roll_dice(sides: Annotated[int, Field(ge=2, le=100, description="faces on the die")] = 6,
              count: int = 1, context: ToolContext | None = None) -> str:
    """Roll dice and report the faces."""
    seed = context.services.get("dice_seed") if context else None
    rng = random.Random(seed)
    return ", ".join(str(rng.randint(1, sides)) for _ in range(count))


@tool(timeout=2)
async def convert_length(value: float, unit: Literal["km", "mi"]) -> str:
    """Convert a length between kilometres and miles."""
    if value < 0:
        raise ToolError("a length cannot be negative")
    return f"{value * 0.621371:.2f} mi" if unit == "km" else f"{value / 0.621371:.2f} km"


def register(registry) -> None:
    registry.register(roll_dice)
    registry.register(convert_length)
