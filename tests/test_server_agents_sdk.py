"""The `openai-agents` Python SDK (RealtimeAgent / RealtimeRunner) with its DEFAULT settings
(voice "ash", semantic VAD, input transcription on) against the server `stepvoice serve`
runs (real session factory, scripted engine, fake token2wav), over wss:// with a
self-signed certificate: a tool-using agent, a handoff between two agents, two tool
calls in one reply, and an interruption (the user speaks over a spoken reply).

Each flow must end with no `error` event, no validation exception in the SDK and no
failed response.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf
import soxr
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

from stepvoice.assistant.server.app import silero_endpointer
from server_support import LoopbackServer, scripted_sessions

calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny in {city}"


@pytest.fixture(autouse=True)
def trust(cert, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    calls.clear()


class Run:
    """One agents-SDK session against a fresh server; collects what a strict app would check."""

    def __init__(self, server):
        self.server = server
        self.errors: list = []
        self.statuses: list[str] = []
        self.raw: list[dict] = []
        self.kinds: list[str] = []

    def see(self, event) -> None:
        self.kinds.append(event.type)
        if event.type == "error":
            self.errors.append(event.error)
        if event.type == "raw_model_event":
            data = event.data
            if data.type in ("exception", "error"):
                self.errors.append(data)
            if data.type == "raw_server_event":
                self.raw.append(data.data)
                if data.data.get("type") == "response.done":
                    self.statuses.append(data.data["response"]["status"])

    def check(self) -> None:
        assert not self.errors, self.errors
        assert self.statuses and "failed" not in self.statuses, self.statuses


async def drive(run: Run, agent, act, until, timeout: float = 60) -> None:
    runner = RealtimeRunner(agent)  # default settings: the SDK's voice, VAD and transcription
    session = await runner.run(model_config={"url": run.server.ws_base + "/realtime", "api_key": "sk-local"})
    async with session:
        await act(session)

        async def read():
            async for event in session:
                run.see(event)
                if until(run):
                    return

        try:
            await asyncio.wait_for(read(), timeout)
        except asyncio.TimeoutError:  # say what was seen
            raise AssertionError(f"timed out; server events: {[e.get('type') for e in run.raw][-60:]}") from None


def served(replies, token2wav, cert, **kw):
    return LoopbackServer(scripted_sessions(replies, token2wav=token2wav, **kw), tls=cert, vad_factory=silero_endpointer)


def completed_texts(run: Run) -> list[str]:
    out = []
    for ev in run.raw:
        if ev.get("type") == "response.done" and ev["response"]["status"] == "completed":
            parts = [c.get("text") or c.get("transcript") or "" for o in ev["response"]["output"]
                     if o["type"] == "message" for c in o["content"]]
            out.append("".join(parts))
    return out


def test_tool_agent_and_handoff(token2wav, cert):
    weather = RealtimeAgent(name="Weather", instructions="You know the weather.", tools=[get_weather])
    front = RealtimeAgent(name="Front", instructions="Greet, then hand off.", handoffs=[weather])
    replies = [
        {"text": "", "tool_calls": [{"name": "transfer_to_weather", "arguments": {}}]},  # Front hands off
        {"text": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},  # Weather uses its tool
        {"text": "It is sunny in Paris.", "speech_codes": list(range(20))},
    ] + [{"text": "Anything else?"}] * 3
    server = served(replies, token2wav, cert)
    run = Run(server)
    try:
        asyncio.run(drive(run, front, lambda s: s.send_message("What is the weather in Paris?"),
                          lambda r: any("sunny in Paris" in t for t in completed_texts(r))))
    finally:
        server.close()
    run.check()
    assert "handoff" in run.kinds and "tool_end" in run.kinds
    assert calls == ["Paris"]
    updates = [e for e in run.raw if e.get("type") == "session.updated"]
    assert updates[-1]["session"]["instructions"] == "You know the weather."  # the handoff's update applied
    assert [t["name"] for t in updates[-1]["session"]["tools"]] == ["get_weather"]
    assert updates[-1]["session"]["audio"]["output"]["voice"] == "ash"  # the SDK default, mapped to a bank voice


def test_two_tool_calls_in_one_reply(token2wav, cert):
    agent = RealtimeAgent(name="Weather", instructions="You know the weather.", tools=[get_weather])
    replies = [{"text": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}},
                                           {"name": "get_weather", "arguments": {"city": "Rome"}}]}]
    replies += [{"text": "Both are sunny."}] * 4  # one or two responses follow, as the SDK sequences them
    server = served(replies, token2wav, cert)
    run = Run(server)
    try:
        asyncio.run(drive(run, agent, lambda s: s.send_message("Weather in Paris and Rome?"),
                          lambda r: sorted(calls) == ["Paris", "Rome"] and "Both are sunny." in completed_texts(r)))
    finally:
        server.close()
    run.check()
    assert sorted(calls) == ["Paris", "Rome"]
    assert "Both are sunny." in completed_texts(run)


def test_interruption(token2wav, cert, espeak_wav):
    x, sr = sf.read(str(espeak_wav("Stop, tell me something else.")), dtype="float32")
    speech = soxr.resample(x, sr, 24000)
    pcm = (np.clip(np.concatenate([speech, np.zeros(24000)]), -1, 1) * 32767).astype("<i2").tobytes()
    agent = RealtimeAgent(name="Storyteller", instructions="Tell stories.")
    replies = [{"text": " ".join(["wave"] * 150), "speech_codes": list(range(600)), "delay_ms": 10},
               {"text": "Okay, something else.", "speech_codes": list(range(16))}] + [{"text": "Sure."}] * 2
    server = served(replies, token2wav, cert, asr_replies=["stop tell me something else"] * 2)
    run = Run(server)

    async def act(session):
        await session.send_message("Tell me a long story.")

        async def barge_in():
            while not any(e.get("type") == "response.output_audio.delta" for e in run.raw):
                await asyncio.sleep(0.05)
            for i in range(0, len(pcm), 4800):  # 100 ms chunks
                await session.send_audio(pcm[i:i + 4800])

        asyncio.get_running_loop().create_task(barge_in())

    try:
        asyncio.run(drive(run, agent, act, lambda r: "Okay, something else." in completed_texts(r)
                          and any(e.get("type") == "conversation.item.input_audio_transcription.completed" for e in r.raw)))
    finally:
        server.close()
    run.check()
    assert "audio_interrupted" in run.kinds
    kinds = [e["type"] for e in run.raw]
    started = kinds.index("input_audio_buffer.speech_started")
    assert "response.output_audio.delta" not in kinds[started:kinds.index("response.done", started)]
    assert run.statuses[0] == "cancelled"
