"""`stepvoice eval --concurrency` against a stand-in for StepFun's vLLM server on 127.0.0.1."""
from __future__ import annotations

import base64
import io
import json
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import soundfile as sf

from stepvoice.assistant.cli import main

UTTERANCES = [(f"8230-279154-000{k}", ref) for k, ref in enumerate(
    ["ONE SMALL STEP", "A BIG DOG RAN HOME", "THE SUN IS HOT", "WE LIKE GREEN TEA", "OPEN THE DOOR NOW"])]


class AudioKeyedServer:
    """Answers each chat request with the transcript of the audio it carries (known by its length),
    slowly, and counts how many requests were in flight at once."""

    def __init__(self, replies: dict[int, str], delay_s: float = 0.4):
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._json({"object": "list", "data": [{"id": "step-audio-2-mini", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    human = [m for m in body["messages"] if m["role"] == "human"][-1]
                    audio = next(c for c in human["content"] if c["type"] == "input_audio")
                    with wave.open(io.BytesIO(base64.b64decode(audio["input_audio"]["data"]))) as w:
                        text = replies[w.getnframes()]
                    time.sleep(delay_s)
                finally:
                    with owner.lock:
                        owner.in_flight -= 1
                usage = {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}
                if not body.get("stream"):
                    self._json({"id": "c", "object": "chat.completion", "model": body["model"], "usage": usage,
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                             "finish_reason": "stop"}]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
                    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                              "finish_reason": finish}]}
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                if body.get("stream_options", {}).get("include_usage"):
                    self.wfile.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")

            def _json(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_concurrency_keeps_several_requests_in_flight_and_scores_the_same(tmp_path, espeak_wav, home, capsys):
    chapter = tmp_path / "test-clean" / "8230" / "279154"
    chapter.mkdir(parents=True)
    replies: dict[int, str] = {}
    for k, (utt, ref) in enumerate(UTTERANCES):
        data, sr = sf.read(str(espeak_wav(ref.lower(), speed=140 + 7 * k)), dtype="float32")
        sf.write(str(chapter / f"{utt}.flac"), data, sr, format="FLAC")
        words = ref.lower().split()
        if k == 1:
            words[1] = "small"  # one substitution in the whole set
        replies[len(data)] = " ".join(words).capitalize() + "."
    assert len(replies) == len(UTTERANCES)  # each clip is told apart by its length
    (chapter / "8230-279154.trans.txt").write_text("".join(f"{u} {r}\n" for u, r in UTTERANCES), encoding="utf-8")
    server = AudioKeyedServer(replies)
    try:
        out = tmp_path / "run"
        rc = main(["eval", "asr", str(tmp_path / "test-clean"), "--model", f"vllm+{server.url}",
                   "--concurrency", "4", "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 0, err
    finally:
        server.close()
    s = json.loads((out / "summary.json").read_text())
    assert server.max_in_flight >= 2  # items really overlapped
    assert s["backend"] == "vllm" and s["concurrency"] == 4 and s["n"] == 5
    words = sum(len(r.split()) for _, r in UTTERANCES)
    assert s["value"] == pytest.approx(100 / words, abs=1e-4)
    assert sorted(json.loads(x)["id"] for x in (out / "results.jsonl").read_text().splitlines()) == \
        [u for u, _ in UTTERANCES]
