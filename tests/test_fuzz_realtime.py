"""Fuzz: 1000 malformed or random Realtime events over 10 concurrent connections to the real server
(real session factory, scripted engine). Every one gets exactly one clear `error` event (never a
`server_error`), no connection drops, the server logs no exception, and a normal turn works afterwards."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import string

import numpy as np
from websockets.asyncio.client import connect

from stepvoice.assistant.server.app import ServerConfig
from stepvoice.assistant.server.limits import ServerLimits
from server_support import LoopbackServer, pcm16_b64, scripted_sessions

CONNECTIONS = 10
EVENTS_PER_CONNECTION = 100


def junk(rng: random.Random, depth: int = 0):
    """A random JSON value."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -2**63, 10**30, 7])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, 3.14])
    if kind == 4:
        return "".join(rng.choice(string.printable + "<|EOT|>\u0000\ud7ff\u4e2d") for _ in range(rng.randrange(30)))
    if kind == 5:
        return rng.choice(["", "inf", "audio", "text", "function", "root"])
    if kind == 6:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["type", "id", "name", "text", "audio", "x", "role", "content"]): junk(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def not_a(rng: random.Random, kind: type):
    """A random JSON value that is not of `kind` (for fields the protocol types strictly)."""
    while True:
        v = junk(rng)
        if v is None:
            continue
        if kind is int and isinstance(v, int) and not isinstance(v, bool):
            continue
        if kind is not int and isinstance(v, kind):
            continue
        return v


def malformed(rng: random.Random) -> str | bytes:
    """One client frame that the server must refuse with exactly one error event."""
    k = rng.randrange(16)
    if k == 0:
        return "".join(rng.choice("{}[]\":,0a \\") for _ in range(rng.randrange(1, 40)))  # broken JSON
    if k == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + b"\xff"  # binary, not UTF-8
    if k == 2:
        return json.dumps(rng.choice([[1, 2], "text", 3, None, True]))  # not an object
    if k == 3:
        return json.dumps({"type": "".join(rng.choice(string.ascii_lowercase + ".") for _ in range(12))})
    if k == 4:
        return json.dumps({"type": not_a(rng, str), "event_id": junk(rng)})
    if k == 5:
        return json.dumps({"type": "input_audio_buffer.append", "audio": not_a(rng, str)})
    if k == 6:  # not base64, or an odd number of bytes
        bad = rng.choice(["@@@@", "abc", base64.b64encode(b"\x01\x02\x03").decode(), "====", "A" * 5])
        return json.dumps({"type": "input_audio_buffer.append", "audio": bad})
    if k == 7:
        return json.dumps({"type": "input_audio_buffer.commit"})  # empty buffer
    if k == 8:
        return json.dumps({"type": "session.update", "session": not_a(rng, dict)})
    if k == 9:
        field = rng.choice([("output_modalities", ["video"]), ("max_output_tokens", -5),
                            ("max_output_tokens", "lots"), ("tools", [{"type": "function", "name": "bad name!"}]),
                            ("instructions", 42)])
        return json.dumps({"type": "session.update", "session": {"type": "realtime", field[0]: field[1]}})
    if k == 10:
        return json.dumps({"type": "conversation.item.create", "item": not_a(rng, dict)})
    if k == 11:
        item = rng.choice([{"type": "message", "role": "user", "content": not_a(rng, list)},
                           {"type": "message", "role": "user", "content": []},
                           {"type": "message", "role": "user", "content": [{"type": "input_video"}]},
                           {"type": "function_call_output", "call_id": "nope", "output": "x"},
                           {"type": "mcp_approval_response", "approval_request_id": "none", "approve": True},
                           {"type": rng.choice(["banana", "mcp_call"])}])
        return json.dumps({"type": "conversation.item.create", "item": item})
    if k == 12:
        return json.dumps({"type": "conversation.item.truncate", "item_id": rng.choice(["x", 5, None]),
                           "content_index": 0, "audio_end_ms": rng.choice([-1, 100, "x"])})
    if k == 13:
        return json.dumps({"type": rng.choice(["conversation.item.delete", "conversation.item.retrieve"]),
                           "item_id": rng.choice(["missing", 3, None])})
    if k == 14:
        return json.dumps({"type": "response.cancel"})  # nothing in progress
    return json.dumps({"type": "response.create", "response": rng.choice([
        {"output_modalities": ["smell"]}, {"max_output_tokens": 0}, {"conversation": 5}, "nope", [1]])})


async def fuzz_one(base: str, seed: int) -> tuple[int, list[dict]]:
    rng = random.Random(seed)
    errors: list[dict] = []
    async with connect(base + "/realtime", max_size=None) as ws:
        async def events_until(pred, timeout=10.0):
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                if ev["type"] == "error":
                    errors.append(ev)
                if pred(ev):
                    return ev

        await events_until(lambda e: e["type"] == "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}}))
        await events_until(lambda e: e["type"] == "session.updated")
        sent = 0
        for _ in range(EVENTS_PER_CONNECTION):
            before = len(errors)
            await ws.send(malformed(rng))
            sent += 1
            await events_until(lambda e: len(errors) > before)
        # a sentinel: everything the server had to say about the fuzz has arrived before it
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await events_until(lambda e: e["type"] == "input_audio_buffer.cleared")
        # then a normal turn on the same connection
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        done = await events_until(lambda e: e["type"] == "response.done")
        assert done["response"]["status"] == "completed", done
        return sent, errors


def test_1000_malformed_events_over_10_connections(caplog):
    factory = scripted_sessions([{"text": "fine"}] * 4)
    server = LoopbackServer(factory, ServerConfig(port=0, server_limits=ServerLimits()))

    async def go():
        return await asyncio.gather(*(fuzz_one(server.ws_base, seed) for seed in range(CONNECTIONS)))

    try:
        with caplog.at_level(logging.WARNING):
            results = asyncio.run(go())
        # and a fresh client after the storm
        async def fresh():
            async with connect(server.ws_base + "/realtime") as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]

        assert asyncio.run(fresh()) == "session.created"
    finally:
        server.close()
    sent = sum(s for s, _ in results)
    errors = [e for _, errs in results for e in errs]
    assert sent >= 1000
    assert len(errors) == sent  # one error per bad event, no more, no less
    assert all(e["error"]["message"] and e["error"]["code"] != "server_error" for e in errors), \
        [e for e in errors if e["error"]["code"] == "server_error"][:3]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info][:3]
    codes = sorted({e["error"]["code"] for e in errors})
    print(f"{sent} malformed events over {CONNECTIONS} connections: {len(errors)} errors, codes {codes}")


def test_random_pcm_through_append_is_answered_or_accepted():
    """50 random PCM payloads (noise, clipping, silence, odd lengths) through input_audio_buffer.append."""
    factory = scripted_sessions([{"text": "heard"}] * 2)
    server = LoopbackServer(factory, ServerConfig(port=0))
    rng = np.random.default_rng(0)

    async def go():
        async with connect(server.ws_base + "/realtime", max_size=None) as ws:
            async def until(t):
                while True:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if ev["type"] in (t, "error"):
                        return ev

            await until("session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}}))
            await until("session.updated")
            refused = 0
            for i in range(50):
                kind = i % 5
                if kind == 0:
                    raw = rng.integers(0, 256, size=int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
                elif kind == 1:
                    raw = (rng.standard_normal(4800) * 40000).clip(-32768, 32767).astype("<i2").tobytes()
                elif kind == 2:
                    raw = np.full(2400, 32767, "<i2").tobytes()
                elif kind == 3:
                    raw = b""
                else:
                    raw = rng.integers(0, 256, size=4801, dtype=np.uint8).tobytes()  # odd: half a sample
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(raw).decode()}))
                await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
                ev = await until("input_audio_buffer.cleared")
                if ev["type"] == "error":
                    refused += 1
                    assert ev["error"]["code"] != "server_error"
                    await until("input_audio_buffer.cleared")
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(np.zeros(4800))}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            done = await until("response.done")
            return refused, done

    try:
        refused, done = asyncio.run(go())
    finally:
        server.close()
    assert refused >= 10  # the odd-length ones at least
    assert done["type"] == "response.done" and done["response"]["status"] == "completed"
