"""get_weather: Open-Meteo geocoding + forecast over httpx (no API key).

Base URLs and units come from `[tools.weather]`, so tests point them at a
server on 127.0.0.1 that answers in Open-Meteo's JSON shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from pydantic import Field

from stepvoice.tools.config import WeatherConfig
from stepvoice.tools.context import ToolContext
from stepvoice.tools.decorator import ToolOutput, tool
from stepvoice.tools.errors import ToolError

# WMO weather interpretation codes, as documented by Open-Meteo.
WMO_CODES = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast", 45: "fog", 48: "freezing fog",
    51: "light drizzle", 53: "drizzle", 55: "dense drizzle", 56: "light freezing drizzle",
    57: "dense freezing drizzle", 61: "light rain", 63: "rain", 65: "heavy rain", 66: "light freezing rain",
    67: "heavy freezing rain", 71: "light snow", 73: "snow", 75: "heavy snow", 77: "snow grains",
    80: "light rain showers", 81: "rain showers", 82: "violent rain showers", 85: "light snow showers",
    86: "heavy snow showers", 95: "thunderstorm", 96: "thunderstorm with light hail",
    99: "thunderstorm with heavy hail",
}
CURRENT = "temperature_2m,apparent_temperature,relative_humidity_2m,precipitation,weather_code,wind_speed_10m"
DAILY = "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,precipitation_probability_max"
IMPERIAL = {"temperature_unit": "fahrenheit", "wind_speed_unit": "mph", "precipitation_unit": "inch"}


@dataclass(frozen=True)
class Place:
    name: str
    latitude: float
    longitude: float
    timezone: str | None
    region: str  # "Île-de-France, France"

    @property
    def label(self) -> str:
        return f"{self.name}, {self.region}" if self.region else self.name


@tool
async def get_weather(
    location: Annotated[str, Field(description="the place, in English, e.g. 'Paris' or 'Shenzhen, China'")],
    context: ToolContext,
) -> ToolOutput:
    """Get the current weather and today's forecast for a place."""
    cfg = context.config.weather
    async with context.http_client(cfg.timeout_s) as client:
        place = await geocode(client, cfg, location)
        params: dict[str, Any] = {"latitude": place.latitude, "longitude": place.longitude, "current": CURRENT,
                                  "daily": DAILY, "timezone": "auto", "forecast_days": 1}
        if cfg.units == "imperial":
            params.update(IMPERIAL)
        forecast = await _get_json(client, cfg.forecast_url, params, "the weather service")
    return ToolOutput(describe(place, forecast), {"place": place.__dict__, "forecast": forecast})


async def geocode(client: httpx.AsyncClient, cfg: WeatherConfig, location: str) -> Place:
    """The best match for a place name; "City, Country" narrows by the part after the comma."""
    location = location.strip()
    if not location:
        raise ToolError("the location is empty; name a city or place")
    name, _, hint = location.partition(",")
    hint = hint.strip().lower()
    params = {"name": name.strip(), "count": 10 if hint else 1, "language": cfg.language, "format": "json"}
    data = await _get_json(client, cfg.geocoding_url, params, "the geocoding service")
    results = data.get("results") or []
    if not results:
        raise ToolError(f"no place called {location!r} was found; try the English name of a city")
    best = results[0]
    if hint:
        for r in results:
            fields = (r.get("country", ""), r.get("country_code", ""), r.get("admin1", ""))
            if any(hint == str(f).lower() for f in fields if f):
                best = r
                break
    region = ", ".join(str(best[k]) for k in ("admin1", "country") if best.get(k) and best.get(k) != best.get("name"))
    try:
        return Place(str(best["name"]), float(best["latitude"]), float(best["longitude"]), best.get("timezone"), region)
    except (KeyError, TypeError, ValueError):
        raise ToolError("the geocoding service answered without coordinates") from None


async def _get_json(client: httpx.AsyncClient, url: str, params: dict[str, Any], what: str) -> dict[str, Any]:
    resp = await client.get(url, params=params)
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code != 200 or not isinstance(data, dict) or data.get("error"):
        reason = data.get("reason") if isinstance(data, dict) else None
        raise ToolError(f"{what} answered HTTP {resp.status_code}" + (f": {reason}" if reason else ""))
    return data


def describe(place: Place, forecast: dict[str, Any]) -> str:
    """One or two plain sentences a voice assistant can read out."""
    cur, cu = forecast.get("current") or {}, forecast.get("current_units") or {}
    day, du = forecast.get("daily") or {}, forecast.get("daily_units") or {}
    parts = [f"Weather in {place.label}"]
    if cur:
        now = [f"{_num(cur.get('temperature_2m'))}{cu.get('temperature_2m', '')}"]
        if cur.get("weather_code") is not None:
            now.append(WMO_CODES.get(int(cur["weather_code"]), f"weather code {cur['weather_code']}"))
        if cur.get("apparent_temperature") is not None:
            now.append(f"feels like {_num(cur['apparent_temperature'])}{cu.get('apparent_temperature', '')}")
        if cur.get("relative_humidity_2m") is not None:
            now.append(f"humidity {_num(cur['relative_humidity_2m'])}{cu.get('relative_humidity_2m', '%')}")
        if cur.get("wind_speed_10m") is not None:
            now.append(f"wind {_num(cur['wind_speed_10m'])} {cu.get('wind_speed_10m', '')}".rstrip())
        parts.append(f"now ({cur.get('time', '')}): " + ", ".join(now))
    if day.get("time"):
        today = []
        code = _first(day.get("weather_code"))
        if code is not None:
            today.append(WMO_CODES.get(int(code), f"weather code {code}"))
        lo, hi = _first(day.get("temperature_2m_min")), _first(day.get("temperature_2m_max"))
        if lo is not None and hi is not None:
            unit = du.get("temperature_2m_max", "")
            today.append(f"low {_num(lo)}{unit}, high {_num(hi)}{unit}")
        prob = _first(day.get("precipitation_probability_max"))
        if prob is not None:
            today.append(f"chance of precipitation {_num(prob)}%")
        total = _first(day.get("precipitation_sum"))
        if total:
            today.append(f"precipitation {_num(total)} {du.get('precipitation_sum', '')}".rstrip())
        parts.append("today: " + ", ".join(today))
    return "; ".join(parts) + "."


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)
