"""Contract test: the official `openai` Python SDK's realtime client against the server
`stepvoice serve` runs (real session factory, real Session, scripted engine, fake
token2wav) over wss:// with a self-signed certificate.

Every server event is validated against the SDK's own pydantic types
(`openai.types.realtime.RealtimeServerEvent`), so a wrong name or a missing
field fails here. The flows are the ones a Realtime app relies on: greeting
without input, out-of-band response, history seeding, a text turn, a naive
"answer every function_call" loop while a server tool runs, truncate,
retrieve/delete, cancel, a re-prompt; and (second test) streamed audio with
the default server VAD and no session.update, input transcription and barge-in.
"""
from __future__ import annotations

import asyncio
import json

import numpy as np
import openai
import pytest
import soundfile as sf
import soxr
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from stepvoice.assistant.server.app import silero_endpointer
from server_support import LoopbackServer, of, pcm16_b64, pcm_of, scripted_sessions, text_of, weather_tools

EVENT = TypeAdapter(RealtimeServerEvent)

GREETING = {"text": "Hello, how can I help?", "speech_codes": list(range(10, 40))}  # 30 codes = 1200 ms
REPLIES = [
    GREETING,
    {"text": "Summary: nothing yet"},  # out of band
    {"text": "Nice to meet you"},  # after seeding
    {"text": "", "tool_calls": [{"name": "get_location", "arguments": {"precise": True}},
                                {"name": "get_weather", "arguments": {"location": "Paris"}}]},
    {"text": "You are in Paris and it is sunny"},
    {"text": "A long spoken answer about the sea", "speech_codes": list(range(100, 150))},  # 2000 ms, truncated
    {"text": " ".join(["wave"] * 100), "speech_codes": list(range(400)), "delay_ms": 5},  # truncated while playing
    {"text": " ".join(["word"] * 100), "delay_ms": 5},  # a session.update arrives while it runs
    {"text": " ".join(["word"] * 200), "delay_ms": 5},  # cancelled
    {"text": "Anything else?"},  # re-prompt after an assistant turn
]


@pytest.fixture
def trust(cert, monkeypatch):
    """Clients trust the self-signed certificate the way the README says (SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))


class Recorder:
    """Reads and type-checks server events; keeps them all."""

    def __init__(self, conn):
        self.conn = conn
        self.all: list[dict] = []

    async def next(self, timeout: float = 20) -> dict:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), timeout)
        EVENT.validate_json(raw)  # the SDK's model of this event type must accept it
        ev = json.loads(raw)
        self.all.append(ev)
        return ev

    async def until(self, etype: str, errors_ok: bool = False) -> list[dict]:
        events = []
        while True:
            ev = await self.next()
            events.append(ev)
            assert errors_ok or ev["type"] != "error", ev
            if ev["type"] == etype:
                return events


def test_sdk_flows_over_wss(token2wav, cert, trust):
    factory = scripted_sessions(REPLIES, tools=weather_tools(), token2wav=token2wav)
    server = LoopbackServer(factory, tls=cert)
    assert server.ws_base.startswith("wss://")
    client = openai.AsyncOpenAI(api_key="unused-on-loopback", websocket_base_url=server.ws_base)

    async def go():
        async with client.realtime.connect(model="step-audio-2-mini") as conn:
            r = Recorder(conn)
            created = await r.next()
            assert created["type"] == "session.created"
            td = created["session"]["audio"]["input"]["turn_detection"]
            assert td["type"] == "server_vad" and td["create_response"] and td["interrupt_response"]  # OpenAI's default
            assert created["session"]["output_modalities"] == ["audio"]

            # --- greeting: response.create on an empty conversation
            await conn.response.create()
            events = await r.until("response.done")
            assert events[-1]["response"]["status"] == "completed"
            assert text_of(events, "response.output_audio_transcript.delta") == GREETING["text"]
            assert len(pcm_of(events)) == 30 * 960  # 30 codes, 40 ms each at 24 kHz
            greeting_id = of(events, "response.output_item.done")[-1]["item"]["id"]
            assert of(events, "conversation.item.added")[0]["previous_item_id"] is None

            # --- out-of-band: own context, instructions, metadata; the conversation is untouched
            await conn.response.create(response={
                "conversation": "none", "output_modalities": ["text"], "instructions": "Summarise.",
                "metadata": {"purpose": "summary"},
                "input": [{"type": "item_reference", "id": greeting_id},
                          {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "summary?"}]}]})
            events = await r.until("response.done")
            done = events[-1]["response"]
            assert done["status"] == "completed" and done["metadata"] == {"purpose": "summary"}
            assert done.get("conversation_id") is None and not of(events, "conversation.item.added")
            assert text_of(events) == "Summary: nothing yet" and not of(events, "response.output_audio.delta")
            prompt, _ = factory.backends[0].requests[-1]
            assert prompt[0].plain_text == "Summarise."
            assert [m.role for m in prompt if m.role != "tool_json_schemas"][1:] == ["assistant", "human"]
            assert prompt[-1].plain_text == "summary?"

            # --- session.update: an unknown voice is one error, the rest of the update applies
            await conn.session.update(session={
                "type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"],
                "audio": {"output": {"voice": "nobody"}},
                "tools": [{"type": "function", "name": "get_location", "description": "Where the user is",
                           "parameters": {"type": "object", "properties": {"precise": {"type": "boolean"}}}}]})
            events = await r.until("session.updated", errors_ok=True)
            errors = of(events, "error")
            assert len(errors) == 1 and errors[0]["error"]["param"] == "session.audio.output.voice"
            assert events[-1]["session"]["instructions"] == "Be brief."
            assert [t["name"] for t in events[-1]["session"]["tools"]] == ["get_location"]
            await conn.session.update(session={"type": "realtime", "audio": {"output": {"voice": "marin"}}})
            events = await r.until("session.updated")
            assert events[-1]["session"]["audio"]["output"]["voice"] == "marin"  # echoed; spoken by a bank voice

            # --- history seeding: system + assistant + user items, chained by previous_item_id
            seeded = []
            for role, kind, text in (("system", "input_text", "The user is called Ada."),
                                     ("assistant", "output_text", "Hi Ada."), ("user", "input_text", "Hello!")):
                await conn.conversation.item.create(item={"type": "message", "role": role,
                                                          "content": [{"type": kind, "text": text}]})
                seeded.append((await r.until("conversation.item.done"))[-1])
            assert seeded[0]["previous_item_id"] == greeting_id
            assert [s["previous_item_id"] for s in seeded[1:]] == [s["item"]["id"] for s in seeded[:-1]]
            await conn.response.create()
            events = await r.until("response.done")
            assert text_of(events) == "Nice to meet you"
            assert of(events, "conversation.item.added")[0]["previous_item_id"] == seeded[-1]["item"]["id"]
            prompt, _ = factory.backends[0].requests[-1]
            assert prompt[0].plain_text == "Be brief."
            assert [(m.role, m.plain_text) for m in prompt[-3:]] == [
                ("system", "The user is called Ada."), ("assistant", "Hi Ada."), ("human", "Hello!")]

            # --- a naive client that answers every function_call, while a server tool also runs
            await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                      "content": [{"type": "input_text", "text": "where and weather?"}]})
            await conn.response.create()
            rounds = 0
            while True:
                events = await r.until("response.done")
                done = events[-1]["response"]
                assert done["status"] == "completed", done
                calls = [o for o in done["output"] if o["type"] == "function_call"]
                if not calls:
                    break
                rounds += 1
                for call in calls:  # the naive loop: every function_call gets an output
                    await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call["call_id"],
                                                              "output": json.dumps({"city": "Paris"})})
                await conn.response.create()
            assert rounds == 1 and text_of(events) == "You are in Paris and it is sunny"
            mcp = [e["item"] for e in r.all if e["type"] == "response.output_item.done" and e["item"]["type"] == "mcp_call"]
            assert len(mcp) == 1 and mcp[0]["name"] == "get_weather" and "sunny in Paris" in mcp[0]["output"]
            assert mcp[0]["server_label"] == "stepvoice"

            # --- truncate: the user heard 400 ms of a 2 s spoken reply
            await conn.response.create(response={"output_modalities": ["audio"]})
            events = await r.until("response.done")
            item_id = of(events, "response.output_item.done")[-1]["item"]["id"]
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=400)
            assert (await r.until("conversation.item.truncated"))[-1]["audio_end_ms"] == 400
            await conn.send({"type": "conversation.item.retrieve", "item_id": item_id})
            retrieved = (await r.until("conversation.item.retrieved"))[-1]["item"]
            heard = retrieved["content"][0]["transcript"]
            assert heard and len(heard) < len(REPLIES[5]["text"]) and REPLIES[5]["text"].startswith(heard.strip())
            # validated as OpenAI does: beyond the audio, or not an audio part -> error, nothing changes
            for bad in ({"audio_end_ms": 60000, "content_index": 0}, {"audio_end_ms": 100, "content_index": 3}):
                await conn.conversation.item.truncate(item_id=item_id, **bad)
                err = (await r.until("error", errors_ok=True))[-1]
                assert err["error"]["code"] == "invalid_value"

            # --- delete: gone from the conversation (and from what the model sees next)
            await conn.conversation.item.delete(item_id=seeded[1]["item"]["id"])
            assert (await r.until("conversation.item.deleted"))[-1]["item_id"] == seeded[1]["item"]["id"]
            await conn.send({"type": "conversation.item.retrieve", "item_id": seeded[1]["item"]["id"]})
            assert (await r.until("error", errors_ok=True))[-1]["error"]["code"] == "item_not_found"

            # --- truncate of the item playing: the response stops, no more of its audio is sent
            await conn.response.create(response={"output_modalities": ["audio"]})
            first = (await r.until("response.output_audio.delta"))[-1]
            await conn.conversation.item.truncate(item_id=first["item_id"], content_index=0, audio_end_ms=40)
            events = await r.until("conversation.item.truncated")
            done = of(events, "response.done")[-1]["response"]
            assert done["status"] == "cancelled"
            assert len(pcm_of([first, *events])) < 100 * 960  # a quarter of its 400 codes at most
            assert events.index(of(events, "response.done")[-1]) > max(
                [i for i, e in enumerate(events) if e["type"] == "response.output_audio.delta"], default=-1)

            # --- session.update during a response: the response goes on; the next one uses it
            await conn.response.create()
            await r.until("response.output_text.delta")
            await conn.session.update(session={"type": "realtime", "instructions": "Later."})
            events = await r.until("response.done")
            assert of(events, "session.updated") and events[-1]["response"]["status"] == "completed"
            assert len(text_of(events).split()) == 99  # the first word came before the update

            # --- cancel: no delta after response.cancel's response.done
            await conn.response.create()
            await r.until("response.output_text.delta")
            await conn.response.cancel()
            events = await r.until("response.done")
            assert events[-1]["response"]["status"] == "cancelled"
            assert len(text_of(events).split()) < 200

            # --- re-prompt: response.create after an assistant turn, no new input
            await conn.response.create()
            events = await r.until("response.done")
            assert events[-1]["response"]["status"] == "completed" and text_of(events) == "Anything else?"
            prompt, _ = factory.backends[0].requests[-1]
            assert "Hi Ada." not in [m.plain_text for m in prompt]  # the deleted item
            assert prompt[0].plain_text == "Later."
            assert not of(r.all, "error") or all(e["error"]["code"] in ("invalid_value", "item_not_found")
                                                   for e in of(r.all, "error"))

    try:
        asyncio.run(go())
    finally:
        server.close()


def speech_24k(path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32")
    return soxr.resample(x, sr, 24000).astype(np.float32)


def test_sdk_audio_with_default_vad_transcription_and_barge_in(token2wav, cert, trust, espeak_wav):
    speech = speech_24k(espeak_wav("Please tell me a long story about the sea."))
    silence = np.zeros(24000, np.float32)
    replies = [{"text": "Sure.", "speech_codes": list(range(25))},
               {"text": " ".join(["wave"] * 150), "speech_codes": list(range(600)), "delay_ms": 10},
               {"text": "Okay.", "speech_codes": [5, 6, 7, 8]}]
    factory = scripted_sessions(replies, token2wav=token2wav, asr_replies=["please tell me a story"] * 3)
    server = LoopbackServer(factory, vad_factory=silero_endpointer, tls=cert)
    client = openai.AsyncOpenAI(api_key="x", websocket_base_url=server.ws_base)

    async def stream(conn, samples):
        for i in range(0, len(samples), 2400):  # 100 ms appends, faster than real time
            await conn.input_audio_buffer.append(audio=pcm16_b64(samples[i:i + 2400]))

    async def go():
        async with client.realtime.connect(model="stepvoice") as conn:
            r = Recorder(conn)
            await r.until("session.created")
            # --- no session.update at all: the microphone is just streamed, server VAD answers
            await stream(conn, np.concatenate([silence[:12000], speech, silence]))
            events = await r.until("response.done")
            kinds = [e["type"] for e in events]
            assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped") \
                < kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
            assert events[-1]["response"]["status"] == "completed" and len(pcm_of(events)) == 25 * 960
            user_item = of(events, "input_audio_buffer.committed")[0]["item_id"]

            # --- input transcription, once asked for: off the reply's path, for the next committed turn
            await conn.session.update(session={"type": "realtime", "audio": {"input": {
                "transcription": {"model": "gpt-4o-mini-transcribe"}}}})
            await r.until("session.updated")

            # --- barge-in: the user speaks over a long reply
            await stream(conn, np.concatenate([speech, silence]))
            await r.until("response.output_audio.delta")
            await stream(conn, np.concatenate([speech, silence]))
            events = await r.until("response.done")
            started = [i for i, e in enumerate(events) if e["type"] == "input_audio_buffer.speech_started"]
            assert started and not of(events[started[0]:], "response.output_audio.delta")  # nothing after speech_started
            assert events[-1]["response"]["status"] == "cancelled"
            assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
            events = await r.until("response.done")
            assert events[-1]["response"]["status"] == "completed"
            assert text_of(events, "response.output_audio_transcript.delta") == "Okay."
            done = await r.until("conversation.item.input_audio_transcription.completed")
            assert done[-1]["transcript"] == "please tell me a story"
            transcribed = done[-1]["item_id"]
            assert transcribed != user_item  # the first turn came before transcription was on
            await conn.send({"type": "conversation.item.retrieve", "item_id": transcribed})
            item = (await r.until("conversation.item.retrieved"))[-1]["item"]
            assert item["content"][0]["transcript"] == "please tell me a story"

    try:
        asyncio.run(go())
    finally:
        server.close()
