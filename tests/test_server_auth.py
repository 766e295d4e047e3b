"""Binding beyond loopback needs a token; with a token, clients without it are refused."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stepvoice.assistant.server.app import ServerConfig
from stepvoice.assistant.server.auth import authorized, check_bind, is_loopback
from stepvoice.engine.errors import ConfigError
from server_support import LoopbackServer, scripted_sessions


def test_bind_policy():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.20", "::", "10.0.0.1"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="token"):
            check_bind(host, None)
        check_bind(host, "s3cret")
    with pytest.raises(ConfigError):
        check_bind("127.0.0.1", "  ")


def test_token_sources():
    from websockets.datastructures import Headers

    none = Headers()
    assert authorized(None, none, "/v1/realtime", [])
    assert not authorized("t0k", none, "/v1/realtime", [])
    assert authorized("t0k", Headers([("Authorization", "Bearer t0k")]), "/v1/realtime", [])
    assert not authorized("t0k", Headers([("Authorization", "Bearer t0kX")]), "/v1/realtime", [])
    assert authorized("t0k", none, "/v1/realtime", ["realtime", "openai-insecure-api-key.t0k"])
    assert authorized("t0k", none, "/v1/realtime?model=x&token=t0k", [])
    assert not authorized("t0k", none, "/v1/realtime?token=nope", [])


class Bank:
    """The one part of a voice bank the voice list reads (no clips needed to list names)."""

    def list(self):
        return ["default", "narrator"]


@pytest.fixture
def guarded():
    server = LoopbackServer(scripted_sessions([], voice_bank=Bank()), ServerConfig(host="127.0.0.1", port=0, token="s3cret"))
    yield server
    server.close()


def test_clients_without_the_token_are_refused(guarded):
    url = guarded.ws_base + "/realtime"

    async def refused(**kw):
        with pytest.raises(InvalidStatus) as e:
            async with connect(url, **kw):
                pass
        assert e.value.response.status_code == 401

    async def accepted(u=url, **kw):
        async with connect(u, **kw) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "session.created"
            return ws.subprotocol

    async def go():
        await refused()
        await refused(additional_headers={"Authorization": "Bearer wrong"})
        await refused(subprotocols=["realtime", "openai-insecure-api-key.wrong"])
        await accepted(additional_headers={"Authorization": "Bearer s3cret"})
        assert await accepted(subprotocols=["realtime", "openai-insecure-api-key.s3cret"]) == "realtime"
        await accepted(url + "?token=s3cret")

    asyncio.run(go())
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(guarded.http_base + "/v1/voices", timeout=10)
    e.value.close()
    assert e.value.code == 401
    req = urllib.request.Request(guarded.http_base + "/v1/voices", headers={"Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["voices"] == ["default", "narrator"]


def test_cli_refuses_a_public_address_without_a_token(tmp_path):
    env = {**os.environ, "STEPVOICE_HOME": str(tmp_path)}
    env.pop("STEPVOICE_TOKEN", None)
    script = tmp_path / "s.yaml"
    script.write_text("replies: [hi]\n")
    out = subprocess.run([sys.executable, "-m", "stepvoice", "serve", "--host", "0.0.0.0", "--port", "0",
                          "--model", f"scripted:{script}", "--no-tools"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to serve on 0.0.0.0 without a token")
