"""The browser page in headless Chromium: a fake microphone (espeak speech from a wav
file) talks to `stepvoice serve` (scripted engine, real Silero server VAD); the reply
is shown and played, and a screenshot is saved."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from stepvoice.assistant.server.app import silero_endpointer
from server_support import LoopbackServer, scripted_sessions

REPLY = "Hello from stepvoice. It is sunny in Paris."


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is not installed: `bash scripts/setup.sh --test` (as root) installs it"
    return path


def open_headless(browser: str, profile: Path, debug_port: int, url: str, *flags: str) -> subprocess.Popen:
    """Headless Chromium on `url` with the DevTools endpoint on `debug_port` (flags as seen working here)."""
    return subprocess.Popen([
        browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--remote-debugging-port={debug_port}", *flags, url,
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def in_page(browser: str, profile: Path, url: str, script, *flags: str):
    """Open `url` in headless Chromium, run `await script(devtools)` against the page, close the browser."""
    port = free_port()
    proc = open_headless(browser, profile, port, url, *flags)
    try:
        ws_url = page_target(port, time.time() + 60)

        async def go():
            async with connect(ws_url, max_size=None) as ws:
                return await script(DevTools(ws))

        return asyncio.run(go())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """Just enough of the Chrome DevTools protocol: evaluate and screenshot."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params):
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    async def poll(self, expr: str, done, timeout: float, every: float = 0.3) -> dict:
        """The JSON value of `expr` once `done(value)`, or the last one seen after `timeout` seconds."""
        deadline, value = time.time() + timeout, {}
        while time.time() < deadline:
            raw = await self.eval(f"JSON.stringify({expr})")
            value = json.loads(raw) if raw and raw != "null" else {}
            if done(value):
                break
            await asyncio.sleep(every)
        return value

    async def eval(self, expr: str):
        r = await self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r["result"].get("value")


def page_target(port: int, deadline: float) -> str:
    while time.time() < deadline:
        try:
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2).read())
            pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("chromium's DevTools endpoint did not come up")


def test_page_plays_and_shows_a_spoken_reply(tmp_path, espeak_wav, fake_token2wav):
    from stepvoice.engine.token2wav import Token2Wav
    from stepvoice.tools import ToolRegistry, tool

    @tool
    def get_weather(location: str) -> str:
        """The weather at a place."""
        return f"sunny, 24 C in {location}"

    tools = ToolRegistry()
    tools.add(get_weather)

    browser = chromium()
    speech = espeak_wav("What is the weather like in Paris today?", rate=16000)
    mic = tmp_path / "mic.wav"  # speech, then silence so the server VAD ends the turn; chromium loops it
    subprocess.run(["sox", str(speech), str(mic), "pad", "0.3", "2.5"], check=True, capture_output=True)
    replies = [{"text": "", "tool_calls": [{"name": "get_weather", "arguments": {"location": "Paris"}}]},
               {"text": REPLY, "speech_codes": list(range(40, 90))}] * 4
    factory = scripted_sessions(replies, tools=tools, token2wav=Token2Wav.from_dir(fake_token2wav))
    server = LoopbackServer(factory, vad_factory=silero_endpointer)

    async def script(dt):
        state = await dt.poll("window.stepvoice || {}",
                              lambda s: s.get("responses", 0) >= 1 and s.get("samplesPlayed", 0) > 0, 60, every=0.5)
        shown = await dt.eval("document.getElementById('transcript').innerText")
        voices = await dt.eval("[...document.getElementById('voice').options].map(o => o.value)")
        shot = await dt.call("Page.captureScreenshot", format="png")
        return state, shown, voices, base64.b64decode(shot["data"])

    try:
        state, shown, voices, png = in_page(browser, tmp_path / "profile", f"{server.http_base}/?autostart=1", script,
                                            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                            f"--use-file-for-fake-audio-capture={mic}",
                                            "--autoplay-policy=no-user-gesture-required", "--window-size=1100,760")
    finally:
        server.close()
    out = tmp_path / "screenshot.png"
    out.write_bytes(png)
    if os.environ.get("STEPVOICE_SCREENSHOT"):  # keep a copy (docs/screenshot.png for the README)
        Path(os.environ["STEPVOICE_SCREENSHOT"]).write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert state.get("connected") and state.get("micOn") and state["micSamples"] > 24000, state
    assert state["speechStarts"] >= 1, state  # the server VAD heard the fake microphone
    assert state["responses"] >= 1 and state["lastStatus"] in ("completed", "cancelled"), state
    assert state["samplesPlayed"] >= 960, state  # at least one code's worth of reply audio was played
    assert REPLY in shown and "spoke" in shown
    assert state["toolCalls"][0] == {"name": "get_weather", "arguments": '{"location": "Paris"}', "server": True}
    assert 'get_weather({"location": "Paris"})' in shown and "sunny, 24 C in Paris" in shown
    assert voices == factory.voices() == ["default"]
    prompt, _ = factory.backends[0].requests[0]
    heard = [p for m in prompt if m.role == "human" for p in m.content]
    assert heard and heard[0].samples.size > 16000 * 0.8  # the utterance reached the model at 16 kHz
