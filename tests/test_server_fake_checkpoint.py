"""The Realtime contract with `stepvoice serve --model <fake checkpoint>`: the CLI's own factory,
the real Session and the local engine on the random-weight checkpoint (its token2wav included),
over wss:// with a self-signed certificate, driven by the `openai` Python SDK.

The model's words are random here, so this checks what does not depend on them: every event
type-checks against the SDK, no `error` event, every response completes (or stops at its token
limit), and the flows of the scripted suite (greeting without input, out-of-band response, history
seeding, text turn, audio with the default server VAD and no session.update, input transcription,
truncate, delete/retrieve, cancel, barge-in with no audio after speech_started) work end to end.
The openai npm SDK's contract (tests/node/contract.mjs, `generic` mode: no content checks) runs
against the same server, and its events pass `tsc --strict`.
"""
from __future__ import annotations

import asyncio
import json
import os

import numpy as np
import openai
import pytest
import soundfile as sf
import soxr
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from server_support import node_contract, of, pcm16_b64, self_signed, speech_pcm, tsc_check

EVENT = TypeAdapter(RealtimeServerEvent)
FINISHED = ("completed", "incomplete")  # incomplete: stopped at max_output_tokens


@pytest.fixture(scope="module")
def served(fake_checkpoint, tmp_path_factory):
    from stepvoice.assistant.server.launch import spawn_server

    tmp = tmp_path_factory.mktemp("serve_fake")
    cert, key = self_signed(tmp)
    env = {**os.environ, "STEPVOICE_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("STEPVOICE_TOKEN", None)
    proc, port = spawn_server(["--model", str(fake_checkpoint), "--tls-cert", str(cert), "--tls-key", str(key)],
                              env, tmp / "server.log")
    yield port, cert
    proc.terminate()
    proc.wait(20)


def test_fake_checkpoint_flows_over_wss(served, espeak_wav, monkeypatch):
    port, cert = served
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    x, sr = sf.read(str(espeak_wav("Please tell me a long story about the sea.")), dtype="float32")
    speech = soxr.resample(x, sr, 24000).astype(np.float32)
    silence = np.zeros(24000, np.float32)
    client = openai.AsyncOpenAI(api_key="x", websocket_base_url=f"wss://127.0.0.1:{port}/v1")

    async def go():
        async with client.realtime.connect(model="step-audio-2-mini") as conn:
            seen: list[dict] = []

            async def until(etype, errors_ok=False):
                events = []
                while True:
                    raw = await asyncio.wait_for(conn.recv_bytes(), 120)
                    EVENT.validate_json(raw)
                    ev = json.loads(raw)
                    seen.append(ev)
                    events.append(ev)
                    assert errors_ok or ev["type"] != "error", ev
                    if ev["type"] == etype:
                        return events

            async def stream(samples):
                for i in range(0, len(samples), 2400):
                    await conn.input_audio_buffer.append(audio=pcm16_b64(samples[i:i + 2400]))

            def finished(events):
                assert events[-1]["response"]["status"] in FINISHED, events[-1]["response"]

            await until("session.created")
            # audio first, before any session.update: the default server VAD finds the turn and answers
            await stream(np.concatenate([silence[:12000], speech, silence]))
            events = await until("response.done")
            assert of(events, "input_audio_buffer.committed") and of(events, "response.created")
            finished(events)

            # keep replies short on CPU; transcription on; an OpenAI voice name; a client tool
            await conn.session.update(session={
                "type": "realtime", "max_output_tokens": 24, "audio": {
                    "input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}, "output": {"voice": "alloy"}},
                "tools": [{"type": "function", "name": "get_location", "parameters": {"type": "object", "properties": {}}}]})
            await until("session.updated")

            # greeting on the conversation as it is; out-of-band with its own input and metadata
            await conn.response.create()
            events = await until("response.done")
            finished(events)
            spoken = [o for o in events[-1]["response"]["output"] if o["type"] == "message"]
            await conn.response.create(response={"conversation": "none", "output_modalities": ["text"],
                                                 "metadata": {"k": "v"}, "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summarise."}]}]})
            events = await until("response.done")
            finished(events)
            assert events[-1]["response"]["metadata"] == {"k": "v"} and not of(events, "conversation.item.added")

            # seeding + a text turn
            for role, kind in (("system", "input_text"), ("assistant", "output_text"), ("user", "input_text")):
                await conn.conversation.item.create(item={"type": "message", "role": role,
                                                          "content": [{"type": kind, "text": f"a {role} line"}]})
                await until("conversation.item.done")
            await conn.response.create(response={"output_modalities": ["text"]})
            events = await until("response.done")
            finished(events)
            assert not of(events, "response.output_audio.delta")  # text-only means no audio, whatever the model

            # a spoken item: truncate it within its audio, retrieve it; delete a seeded item
            if spoken and spoken[0]["content"]:
                item_id = spoken[0]["id"]
                await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
                await until("conversation.item.truncated")
                await conn.send({"type": "conversation.item.retrieve", "item_id": item_id})
                assert (await until("conversation.item.retrieved"))[-1]["item"]["id"] == item_id
            user_item = next(e["item"]["id"] for e in seen if e["type"] == "conversation.item.done"
                             and e["item"].get("role") == "system")
            await conn.conversation.item.delete(item_id=user_item)
            await until("conversation.item.deleted")

            # cancel a long reply
            await conn.response.create(response={"max_output_tokens": 2000, "output_modalities": ["text"]})
            await until("response.created")
            await conn.response.cancel()
            events = await until("response.done")
            assert events[-1]["response"]["status"] in ("cancelled", *FINISHED)

            # barge-in: speech over a long spoken reply; nothing of it is sent after speech_started
            await conn.response.create(response={"max_output_tokens": 2000})
            await until("response.created")
            await stream(np.concatenate([speech, silence]))
            events = await until("input_audio_buffer.speech_started")
            events = await until("response.done")
            assert not of(events, "response.output_audio.delta")
            assert events[-1]["response"]["status"] == "cancelled"
            finished(await until("response.done"))  # the new turn is answered
            if not of(seen, "conversation.item.input_audio_transcription.completed"):
                await until("conversation.item.input_audio_transcription.completed")
            assert not of(seen, "error")

    asyncio.run(go())


def test_fake_checkpoint_node_sdk_and_strict_types(served, espeak_wav, tmp_path):
    port, cert = served
    speech = speech_pcm(espeak_wav("Please tell me a long story about the sea."), tmp_path / "speech.pcm")
    events = node_contract(port, speech, tmp_path / "events.json", cert, generic=True)
    assert not [e for e in events if e["type"] == "error"]
    statuses = [e["response"]["status"] for e in events if e["type"] == "response.done"]
    assert statuses and "failed" not in statuses
    tsc_check(events, tmp_path / "tsc")


def test_fake_checkpoint_agents_sdk_defaults(served, espeak_wav, monkeypatch):
    """The agents SDK with its defaults (voice ash, semantic VAD, transcription on) configures a tool agent
    with a handoff, sends text and then speech; every response finishes, no error, no validation failure."""
    from agents import function_tool
    from agents.realtime import RealtimeAgent, RealtimeRunner

    port, cert = served
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    helper = RealtimeAgent(name="Helper", instructions="Help.")
    agent = RealtimeAgent(name="Front", instructions="Be brief.", tools=[get_weather], handoffs=[helper])
    x, sr = sf.read(str(espeak_wav("Please tell me a long story about the sea.")), dtype="float32")
    pcm = (np.clip(np.concatenate([soxr.resample(x, sr, 24000), np.zeros(24000)]), -1, 1) * 32767).astype("<i2").tobytes()
    errors, statuses = [], []

    async def go():
        runner = RealtimeRunner(agent, config={"model_settings": {"max_output_tokens": 24}})
        session = await runner.run(model_config={"url": f"wss://127.0.0.1:{port}/v1/realtime", "api_key": "sk-local"})
        async with session:
            await session.send_message("Hello!")

            async def read():
                sent_audio = False
                async for event in session:
                    if event.type == "error":
                        errors.append(event.error)
                    if event.type == "raw_model_event":
                        if event.data.type in ("error", "exception"):
                            errors.append(event.data)
                        if event.data.type == "raw_server_event" and event.data.data.get("type") == "response.done":
                            statuses.append(event.data.data["response"]["status"])
                            if not sent_audio:
                                sent_audio = True
                                for i in range(0, len(pcm), 4800):
                                    await session.send_audio(pcm[i:i + 4800])
                            elif len(statuses) >= 2:
                                return

            await asyncio.wait_for(read(), 180)

    asyncio.run(go())
    assert not errors, errors
    assert len(statuses) >= 2 and all(s in FINISHED for s in statuses), statuses
