"""Helpers for the server tests: the REAL session factory of `stepvoice serve`
(`assistant.server.sessions.AssistantSessions` -> `assistant.session.Session`)
over the scripted engine, with server-side tools from a real `ToolRegistry`
and spoken replies through the fake (tiny, random-weight) token2wav; a
RealtimeServer on loopback (optionally over TLS with a self-signed certificate);
and small client helpers.

No stand-in session: every server test exercises the code `serve` runs.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import subprocess
import threading
from pathlib import Path

import numpy as np

from stepvoice.engine.backends.scripted import ScriptedBackend

SAMPLES_PER_CODE = 960  # token2wav: 25 codes per second at 24 kHz


def weather_tools():
    """A registry with one server-side tool, run by the server itself."""
    from stepvoice.tools import ToolRegistry, tool

    @tool
    def get_weather(location: str) -> str:
        """The weather at a place."""
        return f"sunny in {location}"

    registry = ToolRegistry()
    registry.add(get_weather)
    return registry


def scripted_sessions(replies, *, tools=None, token2wav=None, asr_replies=(), voice_bank=None):
    """The real `AssistantSessions` over a per-connection scripted engine. `factory.backends`
    records each connection's engine (its `requests` are the prompts the model saw); input
    transcription plays `asr_replies` on an engine of its own, so it never takes a reply."""
    from stepvoice.assistant.server.sessions import AssistantSessions

    backends: list[ScriptedBackend] = []
    asr: dict[int, ScriptedBackend] = {}

    def new_backend():
        b = ScriptedBackend.from_data({"replies": list(replies)})
        backends.append(b)
        return b

    def asr_backend(backend):
        return asr.setdefault(id(backend), ScriptedBackend.from_data({"replies": list(asr_replies)}))

    from stepvoice.assistant.config import AssistantConfig

    # The scripted engine plays its replies in order: a speculative reply at a pause in the user's speech
    # (on by default; tests/test_server_speculation.py covers it) would take one and, discarded when the
    # user goes on speaking, shift every later reply. The fake-checkpoint suite runs with it on.
    config = AssistantConfig(speculate=False)
    factory = AssistantSessions(new_backend, config=config, tools=tools, token2wav=token2wav, voice_bank=voice_bank,
                                model_name="stepvoice-test", asr_backend=asr_backend)
    factory.backends = backends
    return factory


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost made with the openssl one-liner the README shows."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
    return cert, key


def client_ssl(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


class LoopbackServer:
    """A RealtimeServer on 127.0.0.1 in its own event-loop thread (so sync clients can talk to it)."""

    def __init__(self, factory, config=None, vad_factory=None, tls: tuple[Path, Path] | None = None):
        from stepvoice.assistant.server.app import RealtimeServer, ServerConfig

        if config is None:
            config = ServerConfig(port=0, tls_cert=str(tls[0]) if tls else None, tls_key=str(tls[1]) if tls else None)
        self.loop = asyncio.new_event_loop()
        self.server = RealtimeServer(factory, config, vad_factory=vad_factory)
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
        s = "s" if config.ssl is not None else ""
        self.ws_base = f"ws{s}://127.0.0.1:{self.port}/v1"
        self.http_base = f"http{s}://127.0.0.1:{self.port}"

    def close(self):
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)


async def events_until(ws, etype: str, timeout: float = 30.0) -> list[dict]:
    """The server's events up to and including the first of type `etype`; an `error` event fails."""
    out = []
    while True:
        ev = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        assert ev["type"] != "error", ev
        out.append(ev)
        if ev["type"] == etype:
            return out


def pcm16_b64(samples: np.ndarray) -> str:
    return base64.b64encode((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()).decode()


def pcm_of(events) -> np.ndarray:
    return np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in events
                                  if e["type"] == "response.output_audio.delta"), "<i2")


def of(events, etype):
    return [e for e in events if e["type"] == etype]


def text_of(events, etype="response.output_text.delta") -> str:
    return "".join(e["delta"] for e in of(events, etype))


def dumps(obj) -> str:
    return json.dumps(obj)


async def text_turn(port: int, text: str = "hi", *, modalities: tuple[str, ...] | None = ("text",),
                    timeout: float = 60.0) -> tuple[str, list[dict]]:
    """One typed turn against a running `serve` over a plain WebSocket: (the reply's text, every
    event up to response.done). `modalities=None` keeps the session's default (audio). An `error`
    event fails the caller's test."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/v1/realtime", open_timeout=timeout, max_size=None) as ws:
        if modalities is not None:
            await ws.send(dumps({"type": "session.update",
                                 "session": {"type": "realtime", "output_modalities": list(modalities)}}))
        await ws.send(dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
        await ws.send(dumps({"type": "response.create"}))
        events: list[dict] = []
        while True:
            ev = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            assert ev["type"] != "error", ev
            events.append(ev)
            if ev["type"] == "response.done":
                return text_of(events), events


def env_without_proxies() -> dict:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


# ---- the Node contract (tests/node) --------------------------------------------------------

NODE_DIR = Path(__file__).parent / "node"
TSCONFIG = {"compilerOptions": {"strict": True, "noEmit": True, "target": "es2022", "module": "node16",
                                "moduleResolution": "node16", "skipLibCheck": True, "types": []},
            "files": ["events.ts"]}


def speech_pcm(wav: Path, out: Path) -> Path:
    """A speech clip as raw PCM16 24 kHz (what Realtime clients append)."""
    import soundfile as sf
    import soxr

    x, sr = sf.read(str(wav), dtype="float32")
    out.write_bytes((np.clip(soxr.resample(x, sr, 24000), -1, 1) * 32767).astype("<i2").tobytes())
    return out


def node_contract(port: int, speech: Path, out: Path, cert: Path, generic: bool = False) -> list[dict]:
    """Run tests/node/contract.mjs (the openai npm SDK) against wss://127.0.0.1:PORT; its recorded events."""
    import shutil

    assert shutil.which("node"), "node is missing: scripts/setup.sh --test installs nodejs"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `npm ci` in tests/node (scripts/setup.sh --test does)"
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(cert)}
    run = subprocess.run(["node", str(NODE_DIR / "contract.mjs"), f"https://127.0.0.1:{port}/v1", str(speech), str(out),
                          *(["generic"] if generic else [])], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                         timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(out.read_text())


def tsc_check(events: list[dict], folder: Path) -> None:
    """`tsc --strict` over the events typed as the npm SDK's RealtimeServerEvent[] (excess or missing
    properties, wrong literal types fail). Audio payloads are shortened: their type is what counts."""
    for e in events:
        if e["type"] == "response.output_audio.delta":
            e["delta"] = e["delta"][:8]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.ts").write_text(
        'import type { RealtimeServerEvent } from "openai/resources/realtime/realtime";\n'
        f"export const events: RealtimeServerEvent[] = {json.dumps(events, indent=1)};\n")
    (folder / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    (folder / "node_modules").symlink_to(NODE_DIR / "node_modules")
    tsc = subprocess.run(["node", str(NODE_DIR / "node_modules" / "typescript" / "bin" / "tsc"), "-p", str(folder)],
                         capture_output=True, text=True, timeout=300)
    assert tsc.returncode == 0, tsc.stdout[-4000:] + tsc.stderr[-2000:]
