"""get_date_time: now, in the configured timezone (default the machine's) or at a named place.

A place is resolved offline from the timezone database and a small alias
table; unknown places fall back to the Open-Meteo geocoder, whose answer
carries the place's timezone.
"""
from __future__ import annotations

import os
import zoneinfo
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated, Optional

from pydantic import Field

from stepvoice.tools.builtins.places import timezone_of
from stepvoice.tools.builtins.weather import geocode
from stepvoice.tools.context import ToolContext
from stepvoice.tools.decorator import ToolOutput, tool
from stepvoice.tools.errors import ToolError


@tool
async def get_date_time(
    context: ToolContext,
    location: Annotated[Optional[str], Field(description="a city or country; leave out for the user's own time")] = None,
) -> ToolOutput:
    """Get the current date, weekday and time."""
    now_utc = context.clock()
    if location and location.strip():
        zone_name = timezone_of(location) or await _timezone_online(location, context)
        tz: tzinfo = zoneinfo.ZoneInfo(zone_name)
        label = f"in {location.strip()} ({zone_name})"
    else:
        tz, zone_name = local_timezone(context.config.timezone)
        label = f"({zone_name})"
    now = now_utc.astimezone(tz)
    offset = now.strftime("%z")
    text = f"{now:%A, %d %B %Y, %H:%M} {label}, UTC{offset[:3]}:{offset[3:]}"
    return ToolOutput(text, {"iso": now.isoformat(timespec="seconds"), "timezone": zone_name,
                             "weekday": now.strftime("%A"), "location": location})


def local_timezone(configured: str | None) -> tuple[tzinfo, str]:
    """The configured zone, else TZ, else /etc/localtime's zone, else the machine's fixed offset."""
    for name in (configured, os.environ.get("TZ", "").lstrip(":") or None, _etc_localtime_name()):
        if name:
            try:
                return zoneinfo.ZoneInfo(name), name
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                if name == configured:
                    raise ToolError(f"the configured timezone {name!r} is unknown") from None
    fixed = datetime.now().astimezone().tzinfo
    return fixed, str(fixed)


def _etc_localtime_name() -> str | None:
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return None
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else None


async def _timezone_online(location: str, context: ToolContext) -> str:
    cfg = context.config.weather
    async with context.http_client(cfg.timeout_s) as client:
        place = await geocode(client, cfg, location)
    if not place.timezone:
        raise ToolError(f"could not find the timezone of {location!r}")
    return place.timezone
