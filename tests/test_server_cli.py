"""`stepvoice serve` end to end: the real CLI, assistant Session, tool registry and (fake,
tiny) token2wav behind the Realtime protocol, driven by the `openai` SDK."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time

import numpy as np
import pytest
from pydantic import TypeAdapter

import openai
from openai.types.realtime import RealtimeServerEvent

EVENT = TypeAdapter(RealtimeServerEvent)
CODES = list(range(200, 230))

SCRIPT = f"""
replies:
  - text: Hello there, this is a spoken reply.
    speech_codes: {CODES}
  - tool_calls: [{{name: get_location, arguments: {{}}}}]
  - text: You are in Paris.
  - tool_calls: [{{name: get_date_time, arguments: {{}}}}]
  - text: It is late.
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from stepvoice.assistant.server.launch import spawn_server
    from stepvoice.engine.token2wav.fake import write_fake_token2wav

    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "script.yaml").write_text(SCRIPT)
    write_fake_token2wav(tmp / "token2wav", "tiny")
    env = {**os.environ, "STEPVOICE_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("STEPVOICE_TOKEN", None)
    proc, port = spawn_server(["--model", f"scripted:{tmp / 'script.yaml'}", "--token2wav", str(tmp / "token2wav")],
                              env, tmp / "server.log")
    yield port
    proc.terminate()
    proc.wait(20)


async def until(conn, etype):
    events = []
    while True:
        raw = await asyncio.wait_for(conn.recv_bytes(), 60)
        EVENT.validate_json(raw)
        ev = json.loads(raw)
        assert ev["type"] != "error", ev
        events.append(ev)
        if ev["type"] == etype:
            return events


def test_served_session_speaks_runs_tools_and_truncates(served):
    client = openai.AsyncOpenAI(api_key="x", websocket_base_url=f"ws://127.0.0.1:{served}/v1")

    async def go():
        async with client.realtime.connect(model="stepvoice") as conn:
            await until(conn, "session.created")
            await conn.session.update(session={"type": "realtime", "output_modalities": ["audio"],
                                               "tools": [{"type": "function", "name": "get_location", "description": "where the user is",
                                                          "parameters": {"type": "object", "properties": {}}}]})
            await until(conn, "session.updated")
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
            t = time.perf_counter()
            await conn.response.create()
            events = await until(conn, "response.done")
            deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
            pcm = np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in deltas), "<i2")
            assert len(pcm) == len(CODES) * 960  # 25 codes per second at 24 kHz
            assert np.abs(pcm).max() > 0
            transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
            assert transcript == "Hello there, this is a spoken reply."
            assert time.perf_counter() - t < 30
            item_id = [e for e in events if e["type"] == "response.output_item.done"][-1]["item"]["id"]
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=400)
            assert (await until(conn, "conversation.item.truncated"))[-1]["audio_end_ms"] == 400

            # client-side tool through the real Session: the call ends the response, the output continues it
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await until(conn, "session.updated")
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "where?"}]})
            await conn.response.create()
            events = await until(conn, "response.done")
            call = [e for e in events if e["type"] == "response.function_call_arguments.done"][0]
            assert call["name"] == "get_location"
            await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call["call_id"], "output": "Paris"})
            await conn.response.create()
            events = await until(conn, "response.done")
            assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "You are in Paris."

            # a built-in tool the server runs itself: an mcp_call item (OpenAI's server-side tool item) with
            # its output, and the answer, in one response; no function_call a client would have to answer
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "time?"}]})
            await conn.response.create()
            events = await until(conn, "response.done")
            outputs = [e["item"] for e in events if e["type"] == "conversation.item.done" and e["item"]["type"] == "mcp_call"]
            assert len(outputs) == 1 and re.search(r"\d{4}", outputs[0]["output"])  # the date the tool answered
            assert [o["type"] for o in events[-1]["response"]["output"]] == ["mcp_call", "message"]
            assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "It is late."
            assert events[-1]["response"]["status"] == "completed"

    asyncio.run(go())


def test_token2wav_comes_from_the_flag_or_the_checkpoint(fake_checkpoint, tmp_path):
    from stepvoice.assistant.cli.serve import _token2wav, _token2wav_folder
    from stepvoice.assistant.config import AssistantConfig
    from stepvoice.engine.errors import ConfigError

    assert _token2wav_folder(None, str(fake_checkpoint)) == fake_checkpoint / "token2wav"
    t2w = _token2wav(_token2wav_folder(None, str(fake_checkpoint)), AssistantConfig())
    assert t2w is not None and callable(getattr(t2w, "stream", None))
    assert _token2wav_folder(None, "vllm+http://127.0.0.1:8000") is None
    assert _token2wav(None, AssistantConfig()) is None
    with pytest.raises(ConfigError, match="token2wav folder not found"):
        _token2wav(_token2wav_folder(str(tmp_path / "nowhere"), None), AssistantConfig())
