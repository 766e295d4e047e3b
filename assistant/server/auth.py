"""Who may connect: loopback is open by default; any other address needs a token.

A client shows the token in one of three ways (checked in this order):
- `Authorization: Bearer <token>` (the OpenAI SDKs send this);
- the WebSocket subprotocol `openai-insecure-api-key.<token>` (what browsers
  can send, as with OpenAI's own browser clients);
- the query parameter `?token=<token>` (last resort: it may end up in logs).
"""
from __future__ import annotations

import hmac
import ipaddress
import socket
from typing import Iterable
from urllib.parse import parse_qs, urlsplit

from stepvoice.engine.errors import ConfigError

SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
TOKEN_ENV = "STEPVOICE_TOKEN"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to those (e.g. localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if token is not None and not token.strip():
        raise ConfigError("the server token is empty")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without a token: pass --token or set {TOKEN_ENV} "
            "(or bind 127.0.0.1)"
        )


def offered_token(headers, path: str, subprotocols: Iterable[str]) -> str | None:
    """The token a client presented, wherever it put it."""
    auth = headers.get("Authorization") if headers is not None else None
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for p in subprotocols:
        if p.startswith(SUBPROTOCOL_PREFIX):
            return p[len(SUBPROTOCOL_PREFIX):]
    query = parse_qs(urlsplit(path).query)
    if query.get("token"):
        return query["token"][0]
    return None


def authorized(token: str | None, headers, path: str, subprotocols: Iterable[str]) -> bool:
    """With no token configured everyone may connect (the bind check keeps that to loopback)."""
    if token is None:
        return True
    given = offered_token(headers, path, subprotocols)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def subprotocols_of(headers) -> list[str]:
    raw = ",".join(headers.get_all("Sec-WebSocket-Protocol")) if headers is not None else ""
    return [p.strip() for p in raw.split(",") if p.strip()]
