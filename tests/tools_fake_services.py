"""HTTP servers on 127.0.0.1 that answer like Open-Meteo and DuckDuckGo's HTML endpoint.

The JSON and HTML are the services' recorded shapes (field names, nesting,
units blocks, error bodies) with invented values. Each server records the
requests it got so tests can check what the tools asked for.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

BERLIN = {
    "id": 2950159, "name": "Berlin", "latitude": 52.52437, "longitude": 13.41053, "elevation": 74.0,
    "feature_code": "PPLC", "country_code": "DE", "admin1_id": 2950157, "admin3_id": 6547383,
    "admin4_id": 6547539, "timezone": "Europe/Berlin", "population": 3426354, "postcodes": ["10967", "13347"],
    "country_id": 2921044, "country": "Germany", "admin1": "Land Berlin", "admin3": "Berlin, Stadt",
    "admin4": "Berlin",
}
BERLIN_NH = {  # Berlin, New Hampshire: proves "City, Country/State" narrows the choice
    "id": 5083330, "name": "Berlin", "latitude": 44.46867, "longitude": -71.18508, "elevation": 311.0,
    "feature_code": "PPL", "country_code": "US", "admin1_id": 5090174, "timezone": "America/New_York",
    "population": 10051, "country_id": 6252001, "country": "United States", "admin1": "New Hampshire",
}
HOBBITON = {
    "id": 7910067, "name": "Hobbiton", "latitude": -37.8721, "longitude": 175.6829, "elevation": 120.0,
    "feature_code": "PPL", "country_code": "NZ", "timezone": "Pacific/Auckland", "country_id": 2186224,
    "country": "New Zealand", "admin1": "Waikato",
}
PLACES = {"berlin": [BERLIN, BERLIN_NH], "hobbiton": [HOBBITON]}


def forecast_body(lat: float, lon: float, imperial: bool) -> dict[str, Any]:
    t = (lambda c: round(c * 9 / 5 + 32, 1)) if imperial else (lambda c: c)
    tu = "°F" if imperial else "°C"
    return {
        "latitude": round(lat, 2), "longitude": round(lon, 2), "generationtime_ms": 0.0790357,
        "utc_offset_seconds": 3600, "timezone": "Europe/Berlin", "timezone_abbreviation": "GMT+1",
        "elevation": 38.0,
        "current_units": {"time": "iso8601", "interval": "seconds", "temperature_2m": tu,
                          "apparent_temperature": tu, "relative_humidity_2m": "%",
                          "precipitation": "inch" if imperial else "mm", "weather_code": "wmo code",
                          "wind_speed_10m": "mp/h" if imperial else "km/h"},
        "current": {"time": "2026-11-25T18:15", "interval": 900, "temperature_2m": t(3.4),
                    "apparent_temperature": t(-0.6), "relative_humidity_2m": 87, "precipitation": 0.0,
                    "weather_code": 3, "wind_speed_10m": 8.5 if imperial else 13.7},
        "daily_units": {"time": "iso8601", "weather_code": "wmo code", "temperature_2m_max": tu,
                        "temperature_2m_min": tu, "precipitation_sum": "inch" if imperial else "mm",
                        "precipitation_probability_max": "%"},
        "daily": {"time": ["2026-11-25"], "weather_code": [61], "temperature_2m_max": [t(4.9)],
                  "temperature_2m_min": [t(0.8)], "precipitation_sum": [0.05 if imperial else 1.2],
                  "precipitation_probability_max": [70]},
    }


def open_meteo(path: str, query: dict[str, str]) -> tuple[int, Any]:
    if path == "/v1/search":
        name = query.get("name", "").lower()
        if not name:
            return 400, {"error": True, "reason": "Parameter 'name' is required"}
        found = PLACES.get(name, [])[: int(query.get("count", "10"))]
        return 200, ({"results": found} if found else {}) | {"generationtime_ms": 0.51}
    if path == "/v1/forecast":
        for key in ("current", "daily"):
            for var in query.get(key, "").split(","):
                if var and var not in forecast_body(0, 0, False)[f"{key}_units"]:
                    return 400, {"error": True, "reason": f"Cannot initialize WeatherVariable from invalid "
                                                          f"String value {var} for key {key}"}
        imperial = query.get("temperature_unit") == "fahrenheit"
        return 200, forecast_body(float(query["latitude"]), float(query["longitude"]), imperial)
    return 404, {"error": True, "reason": "Not Found"}


DDG_RESULT = """
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title">
      <a rel="nofollow" class="result__a" href="{href}">{title}</a>
    </h2>
    <div class="result__extras"><div class="result__extras__url">
      <a class="result__url" href="{href}">{href}</a></div></div>
    <a class="result__snippet" href="{href}">{body}</a>
    <div class="clear"></div>
  </div>
</div>"""


def ddg_html(results: list[dict[str, str]]) -> str:
    items = "".join(DDG_RESULT.format(**r) for r in results)
    return (f"<!DOCTYPE html><html><head><title>DuckDuckGo</title></head><body><div class='serp__results'>"
            f"<div id='links' class='results'>{items}</div></div></body></html>")


@dataclass
class FakeServer:
    answer: Callable[[str, str, dict[str, str]], tuple[int, str, str]]  # method, path, query -> status, type, body
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def __enter__(self) -> "FakeServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                parsed = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                if method == "POST":
                    length = int(self.headers.get("Content-Length", 0))
                    query |= {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                outer.requests.append((method, parsed.path, query))
                status, ctype, body = outer.answer(method, parsed.path, query)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def open_meteo_server() -> FakeServer:
    def answer(method: str, path: str, query: dict[str, str]) -> tuple[int, str, str]:
        status, body = open_meteo(path, query)
        return status, "application/json; charset=utf-8", json.dumps(body, ensure_ascii=False)

    return FakeServer(answer)


def ddg_server(results: list[dict[str, str]]) -> FakeServer:
    def answer(method: str, path: str, query: dict[str, str]) -> tuple[int, str, str]:
        if path != "/html/":
            return 404, "text/html", "not found"
        return 200, "text/html; charset=UTF-8", ddg_html(results if query.get("q") else [])

    return FakeServer(answer)
