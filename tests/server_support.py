"""Helpers for the server tests: a small session with the `assistant.session.Session`
contract (scripted backend, server- and client-side tools, spoken replies through
a token2wav-like synthesizer), its factory, and a server running on loopback."""
from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import numpy as np

from stepvoice.engine.backends.scripted import ScriptedBackend
from stepvoice.engine.events import AudioChunk, SpeechCodes, TextDelta, ToolCall, ToolResult, TurnEnd
from stepvoice.engine.messages import Message, Speech, Text
from stepvoice.engine.options import GenerationOptions

SAMPLES_PER_CODE = 960  # 25 codes per second at 24 kHz


class ToneSynth:
    """token2wav's streaming interface, fast: each code becomes 40 ms of a tone whose pitch encodes it."""

    sample_rate = 24000

    def stream(self, voice):
        return _ToneStream(voice)


class _ToneStream:
    def __init__(self, voice):
        self.voice = voice

    def push(self, codes):
        t = np.arange(SAMPLES_PER_CODE) / 24000
        return np.concatenate([0.3 * np.sin(2 * np.pi * (100 + c) * t) for c in codes]).astype(np.float32)

    def finish(self):
        return np.zeros(0, np.float32)


@dataclass
class FakeSession:
    """What the Realtime layer needs of a Session, with scripted behaviour and a record of calls."""

    backend: ScriptedBackend
    settings: object
    server_tools: dict
    synth: ToneSynth | None = field(default_factory=ToneSynth)
    history: list = field(default_factory=list)
    truncations: list = field(default_factory=list)
    tool_outputs: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    voice: str | None = None
    pending: set = field(default_factory=set)

    def set_voice(self, name):
        self.voice = name

    def truncate_last_reply(self, played_s: float):
        self.truncations.append(played_s)

    def add_tool_output(self, call_id: str, output: str):
        if call_id not in self.pending:
            raise KeyError(f"no pending client tool call {call_id}")
        self.pending.discard(call_id)
        self.tool_outputs[call_id] = output
        self.history.append(Message.text("input", output))

    async def respond(self, user_input, *, reply=None, cancel=None):
        self.inputs.append(user_input)
        if user_input is not None:
            self.history.append(user_input if isinstance(user_input, Message) else Message.text("human", str(user_input)))
        client = {t["function"]["name"] for t in self.settings.tools}
        usage_in = usage_out = 0
        for _round in range(4):
            text, codes, calls, end = "", [], [], None
            async for ev in self.backend.generate(list(self.history), GenerationOptions(reply=reply or "text"), cancel):
                if isinstance(ev, TurnEnd):
                    end = ev
                    continue
                yield ev
                if isinstance(ev, TextDelta):
                    text += ev.text
                elif isinstance(ev, SpeechCodes):
                    codes += ev.codes
                    if self.synth is not None and reply == "speech":
                        yield AudioChunk(self.synth.stream(self.voice).push(ev.codes), 24000)
                elif isinstance(ev, ToolCall):
                    calls.append(ev)
            usage_out += end.usage.completion_tokens
            self.history.append(Message("assistant", [Speech(text, tuple(codes))] if codes else [Text(text)]))
            if end.reason != "stop" or not calls:
                break
            if any(c.name in client for c in calls):
                self.pending |= {c.id for c in calls if c.name in client}
                break
            for c in calls:
                out = self.server_tools[c.name](**c.arguments)
                self.history.append(Message.text("input", out))
                yield ToolResult(c.id, c.name, out)
        yield TurnEnd(end.reason, end.usage.__class__(usage_in, usage_out), error=end.error)


class FakeFactory:
    model_name = "stepvoice-test"

    def __init__(self, replies, server_tools=None, voices=("default", "narrator")):
        self.replies = replies
        self.server_tools = server_tools or {}
        self._voices = list(voices)
        self.sessions: list[FakeSession] = []

    def build(self, settings, previous):
        backend = previous.backend if previous else ScriptedBackend.from_data({"replies": self.replies})
        s = FakeSession(backend, settings, self.server_tools, voice=settings.voice)
        if previous:
            s.history = previous.history
        self.sessions.append(s)
        return s

    def voices(self):
        return self._voices


class LoopbackServer:
    """A RealtimeServer on 127.0.0.1 in its own event-loop thread (so sync clients can talk to it)."""

    def __init__(self, factory, config=None, vad_factory=None):
        from stepvoice.assistant.server.app import RealtimeServer, ServerConfig

        self.loop = asyncio.new_event_loop()
        self.server = RealtimeServer(factory, config or ServerConfig(port=0), vad_factory=vad_factory)
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(20), "server did not start"
        self.port = self.server.port
        self.ws_base = f"ws://127.0.0.1:{self.port}/v1"
        self.http_base = f"http://127.0.0.1:{self.port}"

    def close(self):
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)


def pcm16_b64(samples: np.ndarray) -> str:
    import base64

    return base64.b64encode((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()).decode()


def dumps(obj) -> str:
    return json.dumps(obj)
