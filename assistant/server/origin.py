"""Which browsers and host names may reach the server: the Origin and Host checks.

Without them any web page the user opens could drive a loopback server (a
WebSocket is not bound by the same-origin rule), and a DNS-rebinding page
could read its HTTP routes under its own name. So, before any route answers
or any WebSocket upgrades:

- `Host` must name this server: a loopback name or address, the address it
  is bound to, or a host of an allowed origin. A server bound beyond loopback
  (which needs a token, see auth.py) accepts any Host: clients reach it under
  names it cannot know, and the token is what keeps strangers out.
- `Origin`, when present (browsers always send it on a WebSocket handshake,
  SDKs and command-line clients do not), must be the server's own origin
  (its page under any loopback alias and the same port) or one listed with
  `--allow-origin`.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from stepvoice.assistant.server.auth import is_loopback
from stepvoice.engine.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(origin: str) -> str:
    """'HTTPS://Example.com:443/' -> 'https://example.com'; raises ConfigError on anything that is no origin."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"--allow-origin takes an origin such as https://app.example.com:8443, not {origin!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"--allow-origin {origin!r}: the port is not a number") from None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _split_host(value: str) -> tuple[str, int | None]:
    """'Example.com:8765' -> ('example.com', 8765); '[::1]:80' -> ('::1', 80); bad ports -> (host, -1)."""
    parts = urlsplit("//" + value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    return (parts.hostname or "").lower(), port


def _is_loopback_name(host: str) -> bool:
    # Names are matched literally (never resolved): a rebinding name resolves to 127.0.0.1 by design.
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OriginPolicy:
    """The Host/Origin rules of one server (see the module docstring)."""

    bind_host: str = "127.0.0.1"
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_origins", tuple(normalize_origin(o) for o in self.allowed_origins))

    @property
    def open_host(self) -> bool:
        """Bound beyond loopback: any Host is accepted (the token guards the door)."""
        return not is_loopback(self.bind_host)

    def host_allowed(self, host_header: str | None) -> bool:
        if self.open_host:
            return True
        if not host_header:
            return False  # HTTP/1.1 requires Host; a request without one is not from a browser we serve
        host, port = _split_host(host_header)
        if not host or port == -1:
            return False
        if _is_loopback_name(host) or host == self.bind_host.strip("[]").lower():
            return True
        return any(_split_host(urlsplit(o).netloc)[0] == host for o in self.allowed_origins)

    def origin_allowed(self, origin: str | None, host_header: str | None, port: int) -> bool:
        if origin is None:
            return True  # not a browser: SDKs and CLIs send no Origin, and no web page can omit it
        try:
            given = normalize_origin(origin)
        except ConfigError:
            return False  # "null" (sandboxed frames, file:// pages) and anything malformed
        if given in self.allowed_origins:
            return True
        parts = urlsplit(given)
        oport = parts.port or DEFAULT_PORTS[parts.scheme]
        ohost = (parts.hostname or "").lower()
        if _is_loopback_name(ohost) and oport == port:
            return True  # our own page, under any loopback alias
        if host_header:  # our own page under the name the client used to reach us (LAN / reverse proxy)
            host, hport = _split_host(host_header)
            return bool(host) and ohost == host and oport == (hport or DEFAULT_PORTS[parts.scheme])
        return False

    def refusal(self, headers, port: int) -> str | None:
        """None when the request may go on, else the one-line reason for a 403."""
        hosts, origins = _all(headers, "Host"), _all(headers, "Origin")
        if len(hosts) > 1 or len(origins) > 1:
            return "a request may carry one Host and at most one Origin"
        host = hosts[0] if hosts else None
        if not self.host_allowed(host):
            return f"host {host!r} is not this server (use a loopback address, or --allow-origin)"
        origin = origins[0] if origins else None
        if not self.origin_allowed(origin, host, port):
            return f"origin {origin!r} may not use this server (start it with --allow-origin {origin} to allow)"
        return None


def _all(headers, name: str) -> list[str]:
    if headers is None:
        return []
    if hasattr(headers, "get_all"):  # websockets' Headers: a name may repeat
        return list(headers.get_all(name))
    value = headers.get(name)
    return [] if value is None else [value]
