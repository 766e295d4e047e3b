"""Bad client messages get a Realtime `error` event and the connection goes on."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from stepvoice.assistant.server.app import ServerConfig
from stepvoice.assistant.server.realtime import Limits
from server_support import LoopbackServer, pcm16_b64, scripted_sessions


@pytest.fixture
def served():
    factory = scripted_sessions([{"text": "still here"}])
    server = LoopbackServer(factory, ServerConfig(port=0, limits=Limits(max_append_bytes=48000, max_buffer_s=3)))
    yield server
    server.close()


async def next_event(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def expect_error(ws, frame, code: str) -> dict:
    await ws.send(frame)
    ev = await next_event(ws)
    assert ev["type"] == "error", ev
    assert ev["error"]["code"] == code, ev
    assert ev["error"]["message"]
    if isinstance(frame, str) and '"session.update"' in frame:  # validated field by field: the rest still applies
        assert (await next_event(ws))["type"] == "session.updated"
    return ev


def test_bad_messages_get_errors_and_the_connection_survives(served):
    async def go():
        async with connect(served.ws_base + "/realtime") as ws:
            assert (await next_event(ws))["type"] == "session.created"
            await expect_error(ws, "{not json", "invalid_json")
            await expect_error(ws, "[1, 2]", "invalid_json")
            await expect_error(ws, b"\xff\xfe", "invalid_json")
            ev = await expect_error(ws, json.dumps({"type": "session.explode", "event_id": "e1"}), "invalid_event")
            assert ev["error"]["event_id"] == "e1" and ev["error"]["param"] == "type"
            await expect_error(ws, json.dumps({"no": "type"}), "invalid_event")
            # audio before any session.update is accepted (OpenAI's defaults); VAD off from here on
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(np.zeros(2400))}))
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            assert (await next_event(ws))["type"] == "input_audio_buffer.cleared"
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                                            "audio": {"input": {"turn_detection": None}}}}))
            assert (await next_event(ws))["type"] == "session.updated"
            # oversized: one append above the per-append limit (48000 bytes = 1 s)
            await expect_error(ws, json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(np.zeros(24001))}),
                               "audio_too_large")
            # the buffer limit (3 s): the fourth second is refused, the first three stay
            for _ in range(3):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(np.zeros(24000))}))
            await expect_error(ws, json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(np.zeros(24000))}),
                               "audio_too_large")
            await expect_error(ws, json.dumps({"type": "input_audio_buffer.append", "audio": "!!notbase64!!"}), "invalid_value")
            await expect_error(ws, json.dumps({"type": "input_audio_buffer.append", "audio": "AA=="}), "invalid_value")  # one byte: half a sample
            await expect_error(ws, json.dumps({"type": "input_audio_buffer.append"}), "invalid_value")
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            assert (await next_event(ws))["type"] == "input_audio_buffer.cleared"
            await expect_error(ws, json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty")
            await expect_error(ws, json.dumps({"type": "response.cancel"}), "response_cancel_not_active")
            await expect_error(ws, json.dumps({"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0,
                                               "audio_end_ms": 5}), "item_not_found")
            await expect_error(ws, json.dumps({"type": "conversation.item.truncate", "item_id": "x"}), "invalid_value")
            await expect_error(ws, json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "tool",
                                                                                              "content": []}}), "invalid_value")
            await expect_error(ws, json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "assistant",
                                                                                              "content": []}}), "invalid_value")
            await expect_error(ws, json.dumps({"type": "conversation.item.create", "item": {"type": "function_call_output",
                                                                                              "call_id": "c9", "output": "x"}}), "invalid_value")
            await expect_error(ws, json.dumps({"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}}),
                               "invalid_value")
            await expect_error(ws, json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}}),
                               "unsupported_format")
            await expect_error(ws, json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "magic"}}}}}),
                               "invalid_value")
            await expect_error(ws, json.dumps({"type": "session.update", "session": {"tools": [{"type": "function", "name": "bad name!"}]}}),
                               "invalid_value")
            await expect_error(ws, json.dumps({"type": "conversation.item.delete", "item_id": "x"}), "item_not_found")
            ev = await expect_error(ws, json.dumps({"type": "session.update", "event_id": "e7",
                                                    "session": {"audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                                                         "threshold": "high"}}}}}),
                                    "invalid_value")
            assert ev["error"]["event_id"] == "e7"  # nested-field errors name the event too
            # after all that, a normal turn still works on the same connection
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                                   "content": [{"type": "input_text", "text": "hi"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            text = ""
            while True:
                ev = await next_event(ws)
                assert ev["type"] != "error", ev
                if ev["type"] == "response.output_text.delta":
                    text += ev["delta"]
                if ev["type"] == "response.done":
                    break
            assert text == "still here" and ev["response"]["status"] == "completed"
            # a second response.create while one runs is refused
    asyncio.run(go())


def test_second_response_while_one_runs_is_refused_and_cancel_works():
    factory = scripted_sessions([{"text": " ".join(["word"] * 200), "delay_ms": 5}])
    server = LoopbackServer(factory)
    try:
        async def go():
            async with connect(server.ws_base + "/realtime") as ws:
                await next_event(ws)
                await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
                await next_event(ws)
                await ws.send(json.dumps({"type": "response.create"}))
                await ws.send(json.dumps({"type": "response.create"}))
                seen_error = False
                deltas = 0
                while True:
                    ev = await next_event(ws)
                    if ev["type"] == "error":
                        assert ev["error"]["code"] == "conversation_already_has_active_response"
                        seen_error = True
                        await ws.send(json.dumps({"type": "response.cancel"}))
                    if ev["type"] == "response.output_text.delta":
                        deltas += 1
                    if ev["type"] == "response.done":
                        break
                assert seen_error and ev["response"]["status"] == "cancelled"
                assert ev["response"]["status_details"]["reason"] == "client_cancelled"
                assert deltas < 200
        asyncio.run(go())
    finally:
        server.close()


def test_failures_inside_the_server_become_error_events():
    from stepvoice.engine.errors import StepvoiceError

    # the real factory, made to fail where a voice cannot load or a bug hides in building a session
    factory = scripted_sessions([{"text": "fine"}])
    build = factory.build

    def broken(settings, previous):
        if settings.instructions == "bad voice":
            raise StepvoiceError("voice 'narrator' has no prepared prompt")
        if settings.instructions == "crash":
            raise RuntimeError("boom")
        return build(settings, previous)

    factory.build = broken
    server = LoopbackServer(factory)
    try:
        async def go():
            async with connect(server.ws_base + "/realtime") as ws:
                await next_event(ws)
                await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "bad voice"}}))
                assert (await next_event(ws))["type"] == "session.updated"
                ev = await expect_error(ws, json.dumps({"type": "response.create"}), "invalid_value")
                assert "no prepared prompt" in ev["error"]["message"]
                await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "crash"}}))
                assert (await next_event(ws))["type"] == "session.updated"
                ev = await expect_error(ws, json.dumps({"type": "response.create"}), "server_error")
                assert ev["error"]["type"] == "server_error" and "boom" in ev["error"]["message"]
                await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "be nice",
                                                                                "output_modalities": ["text"]}}))
                assert (await next_event(ws))["type"] == "session.updated"
                await ws.send(json.dumps({"type": "response.create"}))
                while (ev := await next_event(ws))["type"] != "response.done":
                    assert ev["type"] != "error"
                assert ev["response"]["status"] == "completed"
        asyncio.run(go())
    finally:
        server.close()
