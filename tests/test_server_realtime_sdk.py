"""Contract test: the official `openai` SDK's realtime client against `stepvoice serve` on loopback.

Every server event is validated against the SDK's own pydantic types
(`openai.types.realtime.RealtimeServerEvent`), so a wrong name or a missing
field fails here.
"""
from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest
from pydantic import TypeAdapter

openai = pytest.importorskip("openai")
from openai.types.realtime import RealtimeServerEvent  # noqa: E402

from stepvoice.engine.messages import Audio, Message, Text  # noqa: E402
from server_support import FakeFactory, LoopbackServer, SAMPLES_PER_CODE, pcm16_b64  # noqa: E402

EVENT = TypeAdapter(RealtimeServerEvent)

REPLIES = [
    {"text": "Hello there friend"},  # text turn
    {"text": "I heard you", "speech_codes": list(range(10, 22))},  # audio turn (spoken)
    {"text": "", "tool_calls": [{"name": "get_location", "arguments": {"precise": True}}]},  # client tool
    {"text": "You are in Paris"},  # after the client's output
    {"text": "", "tool_calls": [{"name": "get_weather", "arguments": {"location": "Paris"}}]},  # server tool
    {"text": "Sunny"},
    {"text": "A long spoken answer", "speech_codes": list(range(100, 150))},  # to truncate
]


@pytest.fixture
def served():
    factory = FakeFactory(REPLIES, server_tools={"get_weather": lambda location: f"sunny in {location}"})
    server = LoopbackServer(factory)
    yield server, factory
    server.close()


async def recv(conn) -> dict:
    raw = await asyncio.wait_for(conn.recv_bytes(), 10)
    EVENT.validate_json(raw)  # strict: the SDK's model of this event type must accept it
    import json

    return json.loads(raw)


async def until(conn, etype: str) -> list[dict]:
    events = []
    while True:
        ev = await recv(conn)
        events.append(ev)
        assert ev["type"] != "error", ev
        if ev["type"] == etype:
            return events


def of(events, etype):
    return [e for e in events if e["type"] == etype]


def test_sdk_text_audio_tools_and_truncate(served):
    server, factory = served
    client = openai.AsyncOpenAI(api_key="unused-on-loopback", websocket_base_url=server.ws_base)

    async def go():
        async with client.realtime.connect(model="step-audio-2-mini") as conn:
            created = await recv(conn)
            assert created["type"] == "session.created"

            # --- text turn
            await conn.session.update(session={"type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"],
                                               "tools": [{"type": "function", "name": "get_location", "description": "Where the user is",
                                                          "parameters": {"type": "object", "properties": {"precise": {"type": "boolean"}}}}]})
            updated = await until(conn, "session.updated")
            assert updated[-1]["session"]["instructions"] == "Be brief."
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
            await until(conn, "conversation.item.done")
            await conn.response.create()
            events = await until(conn, "response.done")
            assert "".join(e["delta"] for e in of(events, "response.output_text.delta")) == "Hello there friend"
            assert of(events, "response.output_text.done")[0]["text"] == "Hello there friend"
            done = events[-1]["response"]
            assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "Hello there friend"
            session = factory.sessions[-1]
            assert session.settings.instructions == "Be brief."
            assert [t["function"]["name"] for t in session.settings.tools] == ["get_location"]
            assert isinstance(session.inputs[0], Message) and session.inputs[0].plain_text == "hi"

            # --- audio turn: 0.5 s of PCM16 24 kHz in, spoken reply (transcript + PCM16 24 kHz) out
            await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"],
                                               "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
                                                         "output": {"voice": "narrator"}}})
            await until(conn, "session.updated")
            t = np.arange(12000) / 24000
            tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for chunk in np.split(tone, 4):
                await conn.input_audio_buffer.append(audio=pcm16_b64(chunk))
            await conn.input_audio_buffer.commit()
            committed = await until(conn, "input_audio_buffer.committed")
            await conn.response.create()
            events = await until(conn, "response.done")
            assert "".join(e["delta"] for e in of(events, "response.output_audio_transcript.delta")) == "I heard you"
            pcm = b"".join(base64.b64decode(e["delta"]) for e in of(events, "response.output_audio.delta"))
            audio_out = np.frombuffer(pcm, "<i2").astype(np.float32) / 32767
            assert len(audio_out) == 12 * SAMPLES_PER_CODE  # 12 codes, 40 ms each at 24 kHz
            expected = factory.sessions[-1].synth.stream(None).push(list(range(10, 22)))
            np.testing.assert_allclose(audio_out, expected, atol=2e-4)
            heard = factory.sessions[-1].inputs[-1]
            assert isinstance(heard.content[0], Audio) and abs(len(heard.content[0].samples) - 8000) <= 16  # 16 kHz
            assert factory.sessions[-1].voice == "narrator"
            assert events[-1]["response"]["output"][0]["content"][0] == {"type": "output_audio", "transcript": "I heard you"}
            assert committed[-1]["item_id"]

            # --- client-side tool round trip
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await until(conn, "session.updated")
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "where am I?"}]})
            await conn.response.create()
            events = await until(conn, "response.done")
            args_done = of(events, "response.function_call_arguments.done")[0]
            assert (args_done["name"], args_done["arguments"]) == ("get_location", '{"precise": true}')
            call_item = events[-1]["response"]["output"][-1]
            assert call_item["type"] == "function_call" and call_item["call_id"] == args_done["call_id"]
            await conn.conversation.item.create(item={"type": "function_call_output", "call_id": args_done["call_id"], "output": '{"city": "Paris"}'})
            await until(conn, "conversation.item.done")
            await conn.response.create()
            events = await until(conn, "response.done")
            assert "".join(e["delta"] for e in of(events, "response.output_text.delta")) == "You are in Paris"
            assert factory.sessions[-1].tool_outputs == {args_done["call_id"]: '{"city": "Paris"}'}

            # --- server-side tool: the call and its output are shown, then the answer, in one response
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]})
            await conn.response.create()
            events = await until(conn, "response.done")
            outputs = [e["item"] for e in of(events, "conversation.item.done") if e["item"]["type"] == "function_call_output"]
            assert [o["output"] for o in outputs] == ["sunny in Paris"]
            assert "".join(e["delta"] for e in of(events, "response.output_text.delta")) == "Sunny"
            kinds = [o["type"] for o in events[-1]["response"]["output"]]
            assert kinds == ["function_call", "message"]

            # --- truncate: the user heard only 200 ms of a 2 s spoken reply
            await conn.response.create(response={"output_modalities": ["audio"]})
            events = await until(conn, "response.done")
            item_id = of(events, "response.output_item.done")[-1]["item"]["id"]
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=200)
            truncated = await until(conn, "conversation.item.truncated")
            assert truncated[-1]["audio_end_ms"] == 200 and truncated[-1]["item_id"] == item_id
            assert factory.sessions[-1].truncations == [0.2]
            # beyond what was sent: clipped to the audio the reply had (50 codes = 2000 ms)
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=60000)
            truncated = await until(conn, "conversation.item.truncated")
            assert truncated[-1]["audio_end_ms"] == 2000

    asyncio.run(go())
