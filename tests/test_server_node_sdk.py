"""Contract test: the official `openai` npm SDK (Node, its `OpenAIRealtimeWS` client) against
the server `stepvoice serve` runs (real session factory, scripted engine, fake token2wav,
Silero server VAD), over wss:// with a self-signed certificate trusted through
NODE_EXTRA_CA_CERTS, as the README shows.

tests/node/contract.mjs runs the flows (greeting without input, out-of-band response,
history seeding, text turn, naive "answer every function_call" loop while a server tool
runs, truncate, cancel, audio with the default server VAD, input transcription, barge-in)
and asserts what it sees; every server event it received is then type-checked with
`tsc --strict` against the SDK's own `RealtimeServerEvent` type (excess or missing
properties fail). The npm packages are installed by scripts/test.sh (`npm ci` in tests/node).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from stepvoice.assistant.server.app import silero_endpointer
from server_support import LoopbackServer, scripted_sessions, self_signed, weather_tools

NODE_DIR = Path(__file__).parent / "node"
REPLIES = [
    {"text": "Hello, how can I help?", "speech_codes": list(range(10, 40))},
    {"text": "Summary: nothing yet"},
    {"text": "Nice to meet you"},
    {"text": "", "tool_calls": [{"name": "get_location", "arguments": {}},
                                {"name": "get_weather", "arguments": {"location": "Paris"}}]},
    {"text": "You are in Paris and it is sunny"},
    {"text": "A long spoken answer about the sea", "speech_codes": list(range(100, 150))},
    {"text": " ".join(["word"] * 200), "delay_ms": 5},
    {"text": "Sure.", "speech_codes": list(range(25))},
    {"text": " ".join(["wave"] * 150), "speech_codes": list(range(600)), "delay_ms": 10},
    {"text": "Okay.", "speech_codes": [5, 6, 7, 8]},
]
TSCONFIG = {"compilerOptions": {"strict": True, "noEmit": True, "target": "es2022", "module": "node16",
                                "moduleResolution": "node16", "skipLibCheck": True, "types": []},
            "files": ["events.ts"]}


def test_node_sdk_flows_and_strict_types(tmp_path, fake_token2wav, espeak_wav):
    from stepvoice.engine.token2wav import Token2Wav

    assert shutil.which("node"), "node is missing: scripts/setup.sh --test installs nodejs"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `npm ci` in tests/node (scripts/test.sh does)"
    x, sr = sf.read(str(espeak_wav("Please tell me a long story about the sea.")), dtype="float32")
    speech = tmp_path / "speech.pcm"
    speech.write_bytes((np.clip(soxr.resample(x, sr, 24000), -1, 1) * 32767).astype("<i2").tobytes())
    cert, key = self_signed(tmp_path)
    factory = scripted_sessions(REPLIES, tools=weather_tools(), token2wav=Token2Wav.from_dir(fake_token2wav),
                                asr_replies=["tell me a story"] * 2)
    server = LoopbackServer(factory, vad_factory=silero_endpointer, tls=(cert, key))
    out = tmp_path / "events.json"
    try:
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(cert)}
        run = subprocess.run(["node", str(NODE_DIR / "contract.mjs"), f"https://127.0.0.1:{server.port}/v1",
                              str(speech), str(out)], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                             timeout=180)
    finally:
        server.close()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    events = json.loads(out.read_text())
    kinds = {e["type"] for e in events}
    assert {"response.mcp_call.completed", "conversation.item.truncated", "input_audio_buffer.speech_started",
            "conversation.item.input_audio_transcription.completed"} <= kinds
    assert [e for e in events if e["type"] == "error"] == []

    # strict TypeScript over every recorded event (audio payloads shortened: their type is what counts)
    for e in events:
        if e["type"] == "response.output_audio.delta":
            e["delta"] = e["delta"][:8]
    check = tmp_path / "tsc"
    check.mkdir()
    (check / "events.ts").write_text(
        'import type { RealtimeServerEvent } from "openai/resources/realtime/realtime";\n'
        f"export const events: RealtimeServerEvent[] = {json.dumps(events, indent=1)};\n")
    (check / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    (check / "node_modules").symlink_to(NODE_DIR / "node_modules")
    tsc = subprocess.run(["node", str(NODE_DIR / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(check)],
                         capture_output=True, text=True, timeout=300)
    assert tsc.returncode == 0, tsc.stdout[-4000:] + tsc.stderr[-2000:]
