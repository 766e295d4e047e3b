"""Server VAD (Silero + the voice loop's endpointer): turns found in streamed audio,
answered automatically, and a reply cut when the user speaks over it."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import soundfile as sf
import soxr
from websockets.asyncio.client import connect

from stepvoice.assistant.server.app import silero_endpointer
from server_support import LoopbackServer, events_until, pcm16_b64, scripted_sessions


def speech_24k(path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32")
    return soxr.resample(x, sr, 24000).astype(np.float32)


async def stream(ws, samples: np.ndarray) -> None:
    for i in range(0, len(samples), 2400):  # 100 ms appends, faster than real time
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16_b64(samples[i:i + 2400])}))


def test_vad_turns_autorespond_and_barge_in(espeak_wav, fake_token2wav):
    from stepvoice.engine.token2wav import Token2Wav

    speech = speech_24k(espeak_wav("Please tell me a long story about the sea."))
    silence = np.zeros(24000, np.float32)
    long_reply = {"text": " ".join(["wave"] * 300), "speech_codes": list(range(300)), "delay_ms": 10}
    factory = scripted_sessions([{"text": "Sure.", "speech_codes": list(range(25))}, long_reply,
                                 {"text": "Okay.", "speech_codes": [5, 6, 7, 8]}], token2wav=Token2Wav.from_dir(fake_token2wav))
    server = LoopbackServer(factory, vad_factory=silero_endpointer)
    try:
        async def go():
            async with connect(server.ws_base + "/realtime", max_size=None) as ws:
                await events_until(ws, "session.created", 20)
                await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 400, "prefix_padding_ms": 200}}}}}))
                await events_until(ws, "session.updated", 20)

                # one utterance then silence: detected, committed and answered without response.create
                await stream(ws, np.concatenate([silence[:12000], speech, silence]))
                events = await events_until(ws, "response.done", 20)
                kinds = [e["type"] for e in events]
                assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped") \
                    < kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
                started = events[kinds.index("input_audio_buffer.speech_started")]
                stopped = events[kinds.index("input_audio_buffer.speech_stopped")]
                assert 300 <= started["audio_start_ms"] <= 800  # speech began after 500 ms of silence
                spoken_ms = len(speech) / 24
                # espeak's file has some silence at both ends: the detected span is a bit shorter than the file
                assert 0.6 * spoken_ms <= stopped["audio_end_ms"] - started["audio_start_ms"] <= spoken_ms + 100
                assert started["item_id"] == stopped["item_id"] == events[kinds.index("input_audio_buffer.committed")]["item_id"]
                assert events[-1]["response"]["status"] == "completed"
                prompt, _ = factory.backends[0].requests[-1]
                heard = prompt[-1].content[0].samples  # the model heard the 16 kHz utterance with pre-roll
                assert abs(len(heard) / 16 - spoken_ms) < 700

                # the user speaks over a long reply: it is cancelled (turn_detected), and the new turn answered
                await stream(ws, np.concatenate([speech, silence]))
                await events_until(ws, "response.output_audio_transcript.delta", 20)
                await stream(ws, np.concatenate([speech, silence]))
                events = await events_until(ws, "response.done", 20)
                assert events[-1]["response"]["status"] == "cancelled"
                assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
                words = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
                assert len(words.split()) < 300
                events = await events_until(ws, "response.done", 20)
                assert events[-1]["response"]["status"] == "completed"
                assert "".join(e.get("delta", "") for e in events if e["type"] == "response.output_audio_transcript.delta") == "Okay."
        asyncio.run(go())
    finally:
        server.close()
