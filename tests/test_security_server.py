"""Limits before work on `stepvoice serve`: each oversized or abusive input gets its Realtime error within
100 ms while the server's event loop never stalls; per-client connection cap, idle timeout, clamped
max_output_tokens, tool `confirm` over the wire, token hygiene, page headers."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stepvoice.assistant.server.app import ServerConfig
from stepvoice.assistant.server.connection_limits import IDLE_CLOSE_CODE
from stepvoice.assistant.server.limits import ServerLimits
from server_support import LoopbackServer, pcm16_b64, scripted_sessions


class LoopLag:
    """The server loop's worst scheduling delay, measured from inside that loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = 0.01):
        self.worst = 0.0
        self.loop, self.period = loop, period
        self._stop = threading.Event()
        asyncio.run_coroutine_threadsafe(self._tick(), loop)

    async def _tick(self):
        while not self._stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, time.perf_counter() - t0 - self.period)

    def stop(self) -> float:
        self._stop.set()
        time.sleep(self.period * 5)  # let the ticker see it and end before the loop is stopped
        return self.worst


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(folder)
    return load_tokenizer(folder)


def serve(limits: ServerLimits | None = None, replies=({"text": "ok"},), tokenizer=None, config=None, tools=None):
    factory = scripted_sessions(list(replies) * 20, tools=tools)
    if config is not None:
        factory.config = config
    if tokenizer is not None:  # the scripted engine has no tokenizer: lend the fake one (serve sets the model's)
        factory.tokenizer = tokenizer
    return LoopbackServer(factory, ServerConfig(port=0, server_limits=limits or ServerLimits()))


async def recv(ws, timeout=10) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws, etype, timeout=10) -> dict:
    while True:
        ev = await recv(ws, timeout)
        if ev["type"] == etype:
            return ev


async def timed_error(ws, frame: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    await ws.send(frame)
    ev = await until(ws, "error")
    return ev, time.perf_counter() - t0


def drive(server, go) -> None:
    """Run the client coroutine function `go` against `server`, then close the server whatever happened."""
    try:
        asyncio.run(go())
    finally:
        server.close()


async def a_response_completes(ws) -> None:
    await ws.send(json.dumps({"type": "response.create"}))
    done = await until(ws, "response.done")
    assert done["response"]["status"] == "completed"


def update(**session) -> str:
    return json.dumps({"type": "session.update", "session": {"type": "realtime", **session}})


def timed_handle(monkeypatch) -> list[float]:
    """Seconds each client event spent in the server, from its frame to its last reply (the error)."""
    from stepvoice.assistant.server.realtime import RealtimeConnection

    spent: list[float] = []
    original = RealtimeConnection.handle

    async def handle(self, raw):
        t0 = time.perf_counter()
        await original(self, raw)
        spent.append(time.perf_counter() - t0)

    monkeypatch.setattr(RealtimeConnection, "handle", handle)
    return spent


def oversized_round(tokenizer, monkeypatch) -> tuple[dict, list[float], float]:
    """One pass: oversized instructions/schemas on one client while another is served; returns the client
    round trips, the time each event spent in the server and the server loop's worst delay."""
    server = serve(ServerLimits(max_instructions_tokens=500, max_tools_tokens=2000), tokenizer=tokenizer)
    spent = timed_handle(monkeypatch)
    lag = LoopLag(server.loop)
    figures = {}

    async def go():
        # no compression on this client: the clock measures the server, not the test deflating 4.8 MB
        async with connect(server.ws_base + "/realtime", max_size=None, compression=None) as ws, \
                connect(server.ws_base + "/realtime") as other:
            await until(ws, "session.created")
            await until(other, "session.created")
            huge = update(instructions="Obey. " * 800_000)  # 4.8 MB of instructions (serialised before the clock)
            ev, dt = await timed_error(ws, huge)
            assert ev["error"]["param"] == "session.instructions" and "characters" in ev["error"]["message"]
            figures["instructions 4.8 MB"] = dt
            ev, dt = await timed_error(ws, update(instructions="word " * 2000))  # under the char cap, over tokens
            assert "tokens" in ev["error"]["message"], ev
            figures["instructions 10 KB (2000 tokens)"] = dt
            tool = {"type": "function", "name": "t", "description": "x" * 1000, "parameters": {"type": "object"}}
            schemas = update(tools=[{**tool, "description": "x" * 75_000}] * 64)  # 4.8 MB
            ev, dt = await timed_error(ws, schemas)
            assert ev["error"]["param"] == "session.tools"
            figures["tool schemas 4.8 MB"] = dt
            # the other client is served all along
            t0 = time.perf_counter()
            await other.send(update(output_modalities=["text"]))
            await until(other, "session.updated")
            figures["other client's update"] = time.perf_counter() - t0

    try:
        asyncio.run(go())
        worst = lag.stop()
    finally:
        server.close()
    print("client round trip:", {k: f"{v * 1000:.1f} ms" for k, v in figures.items()},
          "in the server:", [f"{v * 1000:.1f} ms" for v in spent], f"worst loop lag {worst * 1000:.1f} ms")
    return figures, list(spent), worst


def test_oversized_instructions_and_tool_schemas_are_refused_within_100_ms(tokenizer, monkeypatch):
    # Tokenising a 3-million-token prompt blocked the loop 9-12 s; what is left is parsing the
    # frame (~20-40 ms). On a machine shared by other jobs a pass can be descheduled past
    # 100 ms, so the best of two passes is held to it.
    rounds = []
    for _ in range(2):
        figures, spent, worst = oversized_round(tokenizer, monkeypatch)
        rounds.append((max(spent), figures["other client's update"], worst))
        assert len(spent) >= 4
        if max(rounds[-1]) < 0.1:
            break
    # in the server, from each frame to its error event (the round trip adds moving 4.8 MB over loopback)
    assert min(r[0] for r in rounds) < 0.1, rounds
    assert min(r[1] for r in rounds) < 0.1, rounds
    assert min(r[2] for r in rounds) < 0.1, rounds


def test_pending_committed_audio_is_capped(tokenizer):
    server = serve(ServerLimits(max_pending_audio_s=20))

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            await until(ws, "session.created")
            await ws.send(update(output_modalities=["text"], audio={"input": {"turn_detection": None}}))
            await until(ws, "session.updated")
            chunk = pcm16_b64(np.zeros(24000 * 8, dtype=np.float32))  # 8 s per commit
            for _ in range(2):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                await until(ws, "input_audio_buffer.committed")
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            ev, dt = await timed_error(ws, json.dumps({"type": "input_audio_buffer.commit"}))
            assert ev["error"]["code"] == "audio_too_large" and dt < 0.1
            # after a response the budget is free again: a normal turn works
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            await a_response_completes(ws)

    drive(server, go)


def test_tiny_appends_are_coalesced():
    server = serve()

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            await until(ws, "session.created")
            await ws.send(update(audio={"input": {"turn_detection": None}}))
            await until(ws, "session.updated")
            one = pcm16_b64(np.full(1, 0.1, dtype=np.float32))
            t0 = time.perf_counter()
            for _ in range(4800):  # 200 ms, one sample per append
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": one}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            ev = await until(ws, "input_audio_buffer.committed", timeout=60)
            return time.perf_counter() - t0, ev

    try:
        elapsed, ev = asyncio.run(go())
    finally:
        server.close()
    print(f"4800 one-sample appends + commit: {elapsed:.2f} s")
    assert ev["item_id"]


def test_appends_reach_the_buffer_in_20_ms_pieces():
    from stepvoice.assistant.server.realtime import RealtimeConnection

    sent = []

    async def send(ev):
        sent.append(ev)

    async def go():
        conn = RealtimeConnection(scripted_sessions([{"text": "ok"}]), send)
        await conn.start()
        await conn.handle(update(audio={"input": {"turn_detection": None}}))
        one = pcm16_b64(np.full(1, 0.1, dtype=np.float32))
        for _ in range(4800):
            await conn.handle(json.dumps({"type": "input_audio_buffer.append", "audio": one}))
        pieces = len(conn._audio)
        await conn.handle(json.dumps({"type": "input_audio_buffer.commit"}))
        return pieces

    pieces = asyncio.run(go())
    assert pieces == 4800 // 480  # not 4800 arrays of one sample
    assert [e for e in sent if e["type"] == "input_audio_buffer.committed"]
    assert not [e for e in sent if e["type"] == "error"]


def test_connections_per_client_are_capped():
    server = serve(ServerLimits(max_connections_per_client=3))

    async def go():
        opened = [await connect(server.ws_base + "/realtime") for _ in range(3)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.ws_base + "/realtime")
        await opened[0].close()
        await asyncio.sleep(0.2)
        again = await connect(server.ws_base + "/realtime")  # a slot was given back
        for ws in opened[1:] + [again]:
            await ws.close()
        return refused.value.response.status_code

    try:
        assert asyncio.run(go()) == 429
    finally:
        server.close()


def test_idle_connections_are_closed():
    server = serve(ServerLimits(idle_timeout_s=0.5))

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            await until(ws, "session.created")
            t0 = time.perf_counter()
            ev = await until(ws, "error", timeout=5)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return ev, closed.value.rcvd.code, time.perf_counter() - t0

    try:
        ev, code, dt = asyncio.run(go())
    finally:
        server.close()
    assert ev["error"]["code"] == "idle_timeout" and code == IDLE_CLOSE_CODE and 0.4 < dt < 3


def test_max_output_tokens_is_clamped_to_the_context():
    server = serve()

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            await until(ws, "session.created")
            await ws.send(update(max_output_tokens=1_000_000_000))
            return await until(ws, "session.updated")

    try:
        ev = asyncio.run(go())
    finally:
        server.close()
    from stepvoice.assistant.config import AssistantConfig

    assert ev["session"]["max_output_tokens"] <= AssistantConfig().context.max_context_tokens


def test_tool_confirm_is_asked_over_the_wire():
    from stepvoice.assistant.config import AssistantConfig
    from stepvoice.tools import ToolRegistry, ToolsConfig, tool

    deleted = []

    @tool
    def delete_file(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return "deleted"

    reg = ToolRegistry()
    reg.add(delete_file)
    config = AssistantConfig().model_copy(update={"tools": ToolsConfig(policy={"delete_file": "confirm"})})
    call = {"tool_calls": [{"name": "delete_file", "arguments": {"path": "/tmp/x"}}]}
    server = serve(replies=[call, {"text": "done"}], config=config, tools=reg)

    async def turn(ws, approve: bool):
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "delete it"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        while True:
            ev = await recv(ws)
            if ev["type"] == "conversation.item.added" and ev["item"]["type"] == "mcp_approval_request":
                req = ev["item"]
                break
        assert req["name"] == "delete_file" and json.loads(req["arguments"]) == {"path": "/tmp/x"}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "mcp_approval_response", "approval_request_id": req["id"], "approve": approve}}))
        return await until(ws, "response.done")

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            await until(ws, "session.created")
            await ws.send(update(output_modalities=["text"], audio={"input": {"turn_detection": None}}))
            await until(ws, "session.updated")
            refused = await turn(ws, False)
            ran_before = list(deleted)
            allowed = await turn(ws, True)
            return refused, ran_before, allowed

    try:
        refused, ran_before, allowed = asyncio.run(go())
    finally:
        server.close()
    assert ran_before == [] and deleted == ["/tmp/x"]
    assert refused["response"]["status"] == "completed" and allowed["response"]["status"] == "completed"


def test_token_is_never_echoed_nor_logged(caplog):
    from stepvoice.assistant.server.redact import RedactSecrets

    secret = "s3cret-token-value"
    factory = scripted_sessions([{"text": "ok"}])
    server = LoopbackServer(factory, ServerConfig(port=0, token=secret))
    f = RedactSecrets(secret)
    handler = logging.StreamHandler()
    lines: list[str] = []
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(f)
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)

    async def go():
        async with connect(server.ws_base + "/realtime",
                           subprotocols=["openai-insecure-api-key." + secret]) as ws:
            await until(ws, "session.created")
            return ws.subprotocol

    try:
        chosen = asyncio.run(go())
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        server.close()
    assert chosen is None  # the token subprotocol is not echoed
    assert lines and not any(secret in line for line in lines)
    assert any("Sec-WebSocket-Protocol" in line or "GET /v1/realtime" in line for line in lines)


def test_page_and_health_send_csp_and_frame_headers():
    server = serve()
    try:
        for path in ("/", "/healthz", "/app.js"):
            with urllib.request.urlopen(server.http_base + path, timeout=10) as r:
                h = r.headers
                assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
                assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
    finally:
        server.close()


def test_client_item_text_is_capped_per_item_and_per_session():
    server = serve(ServerLimits(max_item_text_chars=1000, max_session_items=4, max_session_item_chars=2500))

    def text_item(n: int) -> str:
        return json.dumps({"type": "conversation.item.create",
                           "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * n}]}})

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            await until(ws, "session.created")
            ev, dt = await timed_error(ws, text_item(1001))
            assert ev["error"]["code"] == "invalid_value" and "1,001 characters (at most 1,000)" in ev["error"]["message"]
            assert dt < 0.1
            for _ in range(2):  # 2 x 1000 characters: within both caps
                await ws.send(text_item(1000))
                await until(ws, "conversation.item.done")
            ev, _ = await timed_error(ws, text_item(600))  # 2600 characters in all: over the session's 2500
            assert ev["error"]["code"] == "conversation_full" and "open a new session" in ev["error"]["message"]
            await ws.send(text_item(400))  # 2400: still taken
            await until(ws, "conversation.item.done")
            await ws.send(text_item(1))  # the 4th item
            await until(ws, "conversation.item.done")
            ev, _ = await timed_error(ws, text_item(1))  # a 5th: over max_session_items
            assert ev["error"]["code"] == "conversation_full" and "4 items" in ev["error"]["message"]
            await a_response_completes(ws)  # the connection goes on

    drive(server, go)


def test_kept_user_audio_is_bounded_per_session():
    from stepvoice.assistant.server.limits import bound_audio
    from stepvoice.engine.messages import Audio, Message, Text

    history = []
    for i in range(10):
        history.append(Message("human", [Audio(np.zeros(16000 * 30, np.float32), transcript=f"turn {i}" if i % 2 else None)]))
        history.append(Message("assistant", [Text("ok")]))
    same = [id(m) for m in history]
    replaced = bound_audio(history, 120.0)
    kept = sum(p.seconds for m in history for p in m.content if isinstance(p, Audio))
    assert kept == 120.0 and replaced == 6
    assert [id(m) for m in history] == same  # in place: the conversation's items still point at them
    assert history[0].content[0] == Text("[earlier audio, 30 s, not kept]")  # turn 0: no transcript known
    assert history[2].content[0] == Text("turn 1") and history[6].content[0] == Text("turn 3")


def test_a_frame_over_the_message_size_limit_closes_with_1009_and_others_go_on():
    server = serve()

    async def go():
        async with connect(server.ws_base + "/realtime") as other:
            await until(other, "session.created")
            ws = await connect(server.ws_base + "/realtime", max_size=None, compression=None)
            await until(ws, "session.created")
            try:
                await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "x" * 8_000_000}}))
                while True:
                    await ws.recv()
            except ConnectionClosed:
                pass
            code = ws.close_code
            await other.send(update(output_modalities=["text"]))
            await until(other, "session.updated")
            return code

    try:
        assert asyncio.run(go()) == 1009
    finally:
        server.close()
