"""`stepvoice serve`: the Realtime WebSocket at `/v1/realtime` and the browser page at `/`.

One asyncio `websockets` server does both: plain HTTP GETs (the page, its
script, the voice list, a health check) are answered in `process_request`
before any WebSocket handshake; `/v1/realtime` upgrades, after the Host and
Origin checks (origin.py, on every route) and the token check (auth.py), to
one `RealtimeConnection` per client.
"""
from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from stepvoice.assistant.server.auth import SUBPROTOCOL_PREFIX, authorized, check_bind, subprotocols_of
from stepvoice.assistant.server.connection_limits import ClientSlots, client_address, idle_messages
from stepvoice.assistant.server.limits import ServerLimits
from stepvoice.assistant.server.origin import OriginPolicy
from stepvoice.assistant.server.realtime import Limits, RealtimeConnection, SessionFactory, TurnDetection

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
STATIC = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    max_connections: int = 64
    allow_origins: tuple[str, ...] = ()  # browser origins besides the server's own page
    tls_cert: str | None = None  # PEM certificate (chain): serve wss:// and https://
    tls_key: str | None = None  # its PEM private key (may be the same file as the certificate)
    server_limits: ServerLimits = field(default_factory=ServerLimits)  # limits.py: sizes, per-client, idle

    def __post_init__(self) -> None:
        check_bind(self.host, self.token)
        self.ssl = tls_context(self.tls_cert, self.tls_key)
        self.origin_policy = OriginPolicy(self.host, tuple(self.allow_origins))


def tls_context(cert: str | None, key: str | None):
    """An SSL context for `--tls-cert/--tls-key` (None without them); a bad pair is one ConfigError line."""
    if cert is None and key is None:
        return None
    import ssl

    from stepvoice.engine.errors import ConfigError

    if cert is None:
        raise ConfigError("--tls-key needs --tls-cert")
    for path in (cert, key):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"TLS file not found: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"cannot use the TLS certificate {cert} / key {key or cert}: {e}") from None
    return ctx


def silero_endpointer(td: TurnDetection):
    """The server VAD of one connection: Silero frames + the voice loop's endpointer."""
    from stepvoice.assistant.endpointing import EndpointConfig, Endpointer
    from stepvoice.assistant.vad import SileroVAD

    cfg = EndpointConfig(threshold=td.threshold, silence_ms=float(td.silence_duration_ms),
                         pre_roll_ms=float(td.prefix_padding_ms))
    return Endpointer(SileroVAD(), cfg)


class RealtimeServer:
    """Serves many connections at once; each gets its own session from `factory`."""

    def __init__(self, factory: SessionFactory, config: ServerConfig | None = None,
                 vad_factory: Callable[[TurnDetection], Any] | None = silero_endpointer):
        self.factory = factory
        self.config = config or ServerConfig()
        self.vad_factory = vad_factory
        self.connections: set[RealtimeConnection] = set()
        self._server: Server | None = None
        self.slots = ClientSlots(self.config.server_limits.max_connections_per_client)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> "RealtimeServer":
        limits = self.config.limits
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            ssl=self.config.ssl,
            select_subprotocol=_select_subprotocol,
            # larger than the per-append limit, so an oversized append gets an error event, not a closed socket
            max_size=limits.max_append_bytes * 2 + 1024 * 1024,
            ping_interval=20,
            ping_timeout=60,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await self._server.serve_forever()
        finally:
            await self.stop()

    # ---- HTTP -------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        refusal = self.config.origin_policy.refusal(request.headers, self.port)
        if refusal is not None:  # before anything else: no route answers a foreign page or host
            log.warning("refused %s: %s", path, refusal)
            return _text(403, "Forbidden", refusal + "\n")
        if path == REALTIME_PATH:
            if not authorized(self.config.token, request.headers, request.path, subprotocols_of(request.headers)):
                return _text(401, "Unauthorized", "missing or wrong token\n")
            if len(self.connections) >= self.config.max_connections:
                return _text(503, "Service Unavailable", "too many connections\n")
            if self.slots.full(client_address(connection)):
                return _text(429, "Too Many Requests", "too many connections from this client\n")
            return None
        if path == "/healthz":
            return _text(200, "OK", "ok\n")
        if path == "/v1/voices":
            if not authorized(self.config.token, request.headers, request.path, ()):
                return _text(401, "Unauthorized", "missing or wrong token\n")
            body = json.dumps({"voices": self.factory.voices()}).encode()
            return _response(200, "OK", "application/json", body)
        if path in STATIC:
            name = STATIC[path]
            try:
                body = resources.files("stepvoice.assistant.web").joinpath(name).read_bytes()
            except (FileNotFoundError, ModuleNotFoundError):
                return _text(404, "Not Found", "not found\n")
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return _response(200, "OK", ctype + ("; charset=utf-8" if ctype.startswith(("text/", "application/javascript")) else ""), body)
        return _text(404, "Not Found", "not found\n")

    # ---- WebSocket --------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        async def send(event: dict) -> None:
            await ws.send(json.dumps(event, ensure_ascii=False))

        address = client_address(ws)
        if not self.slots.take(address):  # several handshakes at once got past process_request
            await ws.close(1008, "too many connections from this client")
            return
        conn = RealtimeConnection(self.factory, send, limits=self.config.limits, vad_factory=self.vad_factory,
                                  server_limits=self.config.server_limits)
        self.connections.add(conn)
        try:
            await conn.start()
            async for message in idle_messages(ws, conn, self.config.server_limits.idle_timeout_s):
                await conn.handle(message)
        except ConnectionClosed:
            pass
        finally:
            self.slots.give_back(address)
            self.connections.discard(conn)
            await conn.close()


def _select_subprotocol(connection: ServerConnection, offered) -> str | None:
    # Browsers fail the handshake unless one offered subprotocol is echoed back; the token
    # subprotocol is never echoed (it would put the token in the response and in proxies' logs).
    if not offered:
        return None
    if "realtime" in offered:
        return "realtime"
    plain = [p for p in offered if not p.startswith(SUBPROTOCOL_PREFIX)]
    return plain[0] if plain else None


# The page loads only its own files (its audio worklet from a blob: URL), talks only to
# its own server, and may not be framed by another site (clickjacking).
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; script-src 'self' blob:; connect-src 'self'; "
                                "img-src 'self' data:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def _response(status: int, reason: str, ctype: str, body: bytes) -> Response:
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                       *SECURITY_HEADERS])
    return Response(status, reason, headers, body)


def _text(status: int, reason: str, text: str) -> Response:
    return _response(status, reason, "text/plain; charset=utf-8", text.encode())


async def run_server(factory: SessionFactory, config: ServerConfig, ready: Callable[[RealtimeServer], None] | None = None) -> None:
    """Serve until cancelled (Ctrl-C)."""
    server = await RealtimeServer(factory, config).start()
    if ready:
        ready(server)
    try:
        await asyncio.Future()
    finally:
        await server.stop()
