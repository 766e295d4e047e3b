"""Only the server's own page (and allowed origins) may drive `stepvoice serve`; only
its own host names reach it (DNS rebinding). Each attack is reproduced for real:
a page on another origin in headless Chromium, raw handshakes with forged headers."""
from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stepvoice.assistant.server.app import ServerConfig
from stepvoice.assistant.server.origin import OriginPolicy, normalize_origin
from stepvoice.engine.errors import ConfigError
from server_support import LoopbackServer, scripted_sessions
from test_web_page import chromium, in_page

REPLIES = [{"text": "hello"}] * 4


# ---- the rules -----------------------------------------------------------------------

def test_loopback_server_accepts_only_loopback_host_names():
    p = OriginPolicy("127.0.0.1")
    for host in ("127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "127.0.0.2", "app.localhost:1"):
        assert p.host_allowed(host), host
    for host in ("attacker.example", "attacker.example:8765", "192.168.1.5:8765", "127.0.0.1.nip.io:8765",
                 "localhost.attacker.example", "", None, "127.0.0.1:notaport"):
        assert not p.host_allowed(host), host


def test_allowed_origin_adds_its_host_and_non_loopback_bind_accepts_any_host():
    p = OriginPolicy("127.0.0.1", ("https://voice.example.com",))
    assert p.host_allowed("voice.example.com") and not p.host_allowed("other.example.com")
    assert OriginPolicy("0.0.0.0").host_allowed("whatever.lan:8765")  # beyond loopback the token guards the door


def test_origins():
    p = OriginPolicy("127.0.0.1", ("https://app.example.com:8443",))
    own = "127.0.0.1:8765"
    assert p.origin_allowed(None, own, 8765)  # SDKs and CLIs send no Origin
    assert p.origin_allowed("http://127.0.0.1:8765", own, 8765)
    assert p.origin_allowed("http://localhost:8765", own, 8765)  # own page under another loopback alias
    assert p.origin_allowed("https://APP.example.com:8443/", own, 8765)
    for bad in ("http://127.0.0.1:9999", "http://localhost:3000", "https://evil.example", "null",
                "file://", "http://app.example.com:8443", "chrome-extension://abc"):
        assert not p.origin_allowed(bad, own, 8765), bad
    lan = OriginPolicy("0.0.0.0")
    assert lan.origin_allowed("http://box.lan:8765", "box.lan:8765", 8765)  # its page, reached by LAN name
    assert not lan.origin_allowed("http://evil.example:8765", "box.lan:8765", 8765)


def test_allow_origin_values_are_checked():
    assert normalize_origin("HTTPS://Example.com:443/") == "https://example.com"
    assert normalize_origin("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("example.com", "ftp://x", "https://x/path", "https://x:port", "*"):
        with pytest.raises(ConfigError):
            normalize_origin(bad)
    with pytest.raises(ConfigError):
        ServerConfig(allow_origins=("not an origin",))


# ---- the real server -----------------------------------------------------------------

def raw_get(port: int, path: str, host: str, origin: str | None = None) -> int:
    """One HTTP/1.1 GET with exactly these headers (urllib would set Host itself)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if origin:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = s.recv(4096).decode("latin-1")
    return int(head.split()[1])


@pytest.fixture
def server():
    srv = LoopbackServer(scripted_sessions(REPLIES))
    yield srv
    srv.close()


def test_spoofed_host_is_refused_on_every_route(server):
    for path in ("/", "/app.js", "/v1/voices", "/healthz", "/v1/realtime"):
        assert raw_get(server.port, path, "attacker.example") == 403, path
        assert raw_get(server.port, path, f"attacker.example:{server.port}") == 403, path
    assert raw_get(server.port, "/v1/voices", f"127.0.0.1:{server.port}") == 200
    assert raw_get(server.port, "/v1/voices", f"localhost:{server.port}") == 200


def test_websocket_handshake_checks_origin_and_host(server):
    url = f"{server.ws_base}/realtime"

    async def status(uri=url, **kw):
        try:
            async with connect(uri, open_timeout=10, **kw) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
        except InvalidStatus as e:
            return e.response.status_code

    assert asyncio.run(status(origin="https://evil.example")) == 403
    assert asyncio.run(status(origin=f"http://127.0.0.1:{server.port + 1}")) == 403
    # DNS rebinding: the browser asks for attacker.example, which now resolves to 127.0.0.1
    rebound = socket.create_connection(("127.0.0.1", server.port))
    assert asyncio.run(status(uri=f"ws://attacker.example:{server.port}/v1/realtime", sock=rebound)) == 403
    assert asyncio.run(status(additional_headers={"Host": f"attacker.example:{server.port}"})) == 403  # two Hosts
    assert asyncio.run(status(origin=f"http://localhost:{server.port}")) == "session.created"
    assert asyncio.run(status()) == "session.created"  # SDK-style: no Origin


def test_allowed_origin_may_connect():
    allowed = "https://voice.example.com"
    srv = LoopbackServer(scripted_sessions(REPLIES), ServerConfig(port=0, allow_origins=(allowed,)))
    try:
        async def first(origin):
            try:
                async with connect(f"{srv.ws_base}/realtime", origin=origin, open_timeout=10) as ws:
                    return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
            except InvalidStatus as e:
                return e.response.status_code

        assert asyncio.run(first(allowed)) == "session.created"
        assert asyncio.run(first("https://other.example.com")) == 403
    finally:
        srv.close()


ATTACK_PAGE = """<!doctype html><title>innocent</title><script>
window.result = {ws: "pending", read: "pending"};
const ws = new WebSocket("ws://127.0.0.1:%(port)d/v1/realtime");
ws.onopen = () => { window.result.ws = "open"; };
ws.onmessage = (e) => { window.result.ws = "message:" + e.data.slice(0, 40); };
ws.onerror = () => { if (window.result.ws === "pending") window.result.ws = "error"; };
ws.onclose = () => { if (window.result.ws === "pending") window.result.ws = "closed"; };
fetch("http://127.0.0.1:%(port)d/v1/voices").then(r => r.text())
  .then(t => { window.result.read = "read:" + t.slice(0, 40); }, () => { window.result.read = "blocked"; });
</script>"""


def test_page_on_another_origin_cannot_connect_or_read(tmp_path, server):
    """The attack as seen: a page from another origin, in a real browser, tries the realtime socket and the API."""
    browser = chromium()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text(ATTACK_PAGE % {"port": server.port})
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "site"), **kw)  # noqa: E731
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    site.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        result = in_page(browser, tmp_path / "profile", f"http://127.0.0.1:{site.server_address[1]}/index.html",
                         lambda dt: dt.poll("window.result || null", lambda r: r and "pending" not in r.values(), 30))
    finally:
        site.shutdown()
    assert result.get("ws") in ("error", "closed"), result  # the handshake got a 403: never open, no event read
    assert result.get("read") == "blocked", result
    # and the server's own origin is still served
    assert urllib.request.urlopen(f"{server.http_base}/v1/voices", timeout=10).status == 200
