"""Contract test: the official `openai` npm SDK (Node, its `OpenAIRealtimeWS` client) against
the server `stepvoice serve` runs (real session factory, scripted engine, fake token2wav,
Silero server VAD), over wss:// with a self-signed certificate trusted through
NODE_EXTRA_CA_CERTS, as the README shows.

tests/node/contract.mjs runs the flows (greeting without input, out-of-band response,
history seeding, text turn, naive "answer every function_call" loop while a server tool
runs, truncate, cancel, audio with the default server VAD, input transcription, barge-in)
and asserts what it sees; every server event it received is then type-checked with
`tsc --strict` against the SDK's own `RealtimeServerEvent` type (excess or missing
properties fail). The npm packages are installed by scripts/setup.sh --test (`npm ci` in tests/node).
"""
from __future__ import annotations

from stepvoice.assistant.server.app import silero_endpointer
from server_support import (
    LoopbackServer, node_contract, scripted_sessions, self_signed, speech_pcm, tsc_check, weather_tools,
)

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


def test_node_sdk_flows_and_strict_types(tmp_path, fake_token2wav, espeak_wav):
    from stepvoice.engine.token2wav import Token2Wav

    speech = speech_pcm(espeak_wav("Please tell me a long story about the sea."), tmp_path / "speech.pcm")
    cert, key = self_signed(tmp_path)
    factory = scripted_sessions(REPLIES, tools=weather_tools(), token2wav=Token2Wav.from_dir(fake_token2wav),
                                asr_replies=["tell me a story"] * 2)
    server = LoopbackServer(factory, vad_factory=silero_endpointer, tls=(cert, key))
    try:
        events = node_contract(server.port, speech, tmp_path / "events.json", cert)
    finally:
        server.close()
    kinds = {e["type"] for e in events}
    assert {"response.mcp_call.completed", "conversation.item.truncated", "input_audio_buffer.speech_started",
            "conversation.item.input_audio_transcription.completed"} <= kinds
    assert [e for e in events if e["type"] == "error"] == []
    tsc_check(events, tmp_path / "tsc")
