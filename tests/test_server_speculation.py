"""Speculative replies behind the server VAD: a pause the user talks on after sends nothing of the
speculation; the real end commits the speculation (the model runs once for the whole utterance)."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import soxr
from websockets.asyncio.client import connect

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.server.app import silero_endpointer
from stepvoice.assistant.server.sessions import AssistantSessions
from stepvoice.engine.events import TextDelta, TurnEnd, Usage
from stepvoice.engine.messages import Audio
from server_support import LoopbackServer, events_until, pcm16_b64
from voice_loop_support import espeak


class Echo:
    """Says how many samples of user audio it heard (every request answered, none used up)."""

    def __init__(self):
        self.heard: list[int] = []

    async def generate(self, messages, options, cancel=None):
        audio = [p for m in messages if m.role == "human" for p in m.content if isinstance(p, Audio)]
        n = len(audio[-1].samples) if audio else 0
        self.heard.append(n)
        await asyncio.sleep(0.05)
        yield TextDelta(f"heard {n}", "text")
        yield TurnEnd("stop", Usage(completion_tokens=2))


def test_server_vad_speculation_is_discarded_on_resume_and_committed_at_the_end():
    model = Echo()
    factory = AssistantSessions(lambda: model, config=AssistantConfig(speculate=True, speculate_pause_ms=200),
                                model_name="stepvoice-test")
    server = LoopbackServer(factory, vad_factory=silero_endpointer)
    to24k = lambda x: soxr.resample(x, 16000, 24000).astype(np.float32)  # noqa: E731
    audio = np.concatenate([np.zeros(12000, np.float32), to24k(espeak("What is the weather")),
                            np.zeros(8400, np.float32),  # 350 ms: a pause, not an end (hangover 500 ms)
                            to24k(espeak("in Paris tomorrow morning")), np.zeros(36000, np.float32)])

    async def go():
        async with connect(server.ws_base + "/realtime", max_size=None) as ws:
            await events_until(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"],
                "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}}))
            await events_until(ws, "session.updated")
            for i in range(0, len(audio), 2400):  # 100 ms appends, about real time
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(audio[i:i + 2400])}))
                await asyncio.sleep(0.1)
            events = await events_until(ws, "response.done")
            await asyncio.sleep(0.3)
            return events

    try:
        events = asyncio.run(go())
    finally:
        server.close()
    kinds = [e["type"] for e in events]
    assert kinds.count("response.created") == 1 and kinds.count("input_audio_buffer.committed") == 1
    full = max(model.heard)
    assert min(model.heard) < full  # a speculation started at the mid-sentence pause ...
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == f"heard {full}"  # ... and nothing of it reached the client
    assert all(f"heard {n}" not in json.dumps(events) for n in model.heard if n != full)
    assert model.heard.count(full) == 1  # the answer is the committed speculation, not a second run
    assert events[-1]["response"]["status"] == "completed"
