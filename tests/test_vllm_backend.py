"""VLLMBackend against a server on 127.0.0.1 that answers in the vLLM fork's wire format."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from stepvoice.engine.backends import load_backend
from stepvoice.engine.backends.vllm import VLLMBackend, VLLMSettings
from stepvoice.engine.events import SpeechCodes, TextDelta, ToolCall, TurnEnd
from stepvoice.engine.messages import Audio, Message, Speech, Text
from stepvoice.engine.options import GenerationOptions


class ForkServer:
    """A tiny stand-in for `vllm serve --tokenizer-mode step_audio_2 ...`.

    `replies` is a queue of plans, one per chat request: {"status": int,
    "chunks": [delta dicts], "finish": str, "usage": {...}, "stall_s": float,
    "chunk_delay_s": float}. Every request body is recorded in `requests`.
    """

    def __init__(self):
        self.replies: list[dict] = []
        self.requests: list[dict] = []
        self.model_asks = 0
        self.auth: list = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path != "/v1/models":
                    self.send_error(404)
                    return
                owner.model_asks += 1
                self._json(200, {"object": "list", "data": [{"id": "step-audio-2-mini", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.auth.append(self.headers.get("Authorization"))
                plan = owner.replies.pop(0) if owner.replies else {"chunks": [{"content": "ok"}]}
                status = plan.get("status", 200)
                if status != 200:
                    self._json(status, {"object": "error", "message": plan.get("message", "boom"), "code": status})
                    return
                time.sleep(plan.get("stall_s", 0))
                chunks = plan["chunks"]
                finish = plan.get("finish", "stop")
                usage = plan.get("usage", {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18})
                if not body.get("stream"):
                    merged: dict = {"role": "assistant", "content": None}
                    for d in chunks:
                        for k, v in d.items():
                            if k == "tts_content":
                                tc = merged.setdefault("tts_content", {"tts_text": "", "tts_audio": ""})
                                for kk, vv in v.items():
                                    tc[kk] += vv
                            elif k == "tool_calls":
                                merged.setdefault("tool_calls", []).extend(
                                    {"id": t["id"], "type": "function", "function": t["function"]} for t in v
                                )
                            else:
                                merged[k] = (merged.get(k) or "") + v
                    self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                     "choices": [{"index": 0, "message": merged, "finish_reason": finish}],
                                     "usage": usage})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                first = {"role": "assistant", "content": ""}
                self._sse({"choices": [{"index": 0, "delta": first, "finish_reason": None}]})
                for d in chunks:
                    time.sleep(plan.get("chunk_delay_s", 0))
                    self._sse({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                               "choices": [{"index": 0, "delta": d, "finish_reason": None}]})
                self._sse({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                if body.get("stream_options", {}).get("include_usage"):
                    self._sse({"choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")

            def _sse(self, obj):
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fork():
    s = ForkServer()
    yield s
    s.close()


def run(backend, messages, options=None, cancel=None):
    async def go():
        return [e async for e in backend.generate(messages, options or GenerationOptions(), cancel)]

    return asyncio.run(go())


def decode_wav(b64: str) -> np.ndarray:
    with wave.open(io.BytesIO(base64.b64decode(b64))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32767.0


SPOKEN = [
    {"tts_content": {"tts_text": "Hello", "tts_audio": "<audio_1><audio_2><audio_3><audio_4>"}},
    {"tts_content": {"tts_text": " there", "tts_audio": "<audio_5><audio_6561><audio_6561><audio_6561>"}},
]


@pytest.mark.parametrize("stream", [True, False])
def test_spoken_reply_becomes_speech_text_and_codes(fork, stream):
    fork.replies.append({"chunks": SPOKEN})
    b = VLLMBackend(fork.url, VLLMSettings(stream=stream))
    events = run(b, [Message.text("human", "hi")], GenerationOptions(reply="speech", temperature=0.3, seed=5))
    text = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(t.text for t in text) == "Hello there" and {t.channel for t in text} == {"speech"}
    assert [c for e in events if isinstance(e, SpeechCodes) for c in e.codes] == [1, 2, 3, 4, 5]  # pads dropped
    end = events[-1]
    assert isinstance(end, TurnEnd) and end.reason == "stop" and sum(isinstance(e, TurnEnd) for e in events) == 1
    assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (11, 7)
    body = fork.requests[-1]
    # a spoken reply is opened with <tts_start> and continued, as the official client does
    assert body["messages"][-1] == {"role": "assistant", "content": "<tts_start>"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["model"] == "step-audio-2-mini" and body["stream"] is stream
    assert (body["temperature"], body["seed"], body["skip_special_tokens"]) == (0.3, 5, False)


def test_text_reply_audio_input_and_history_in_fork_format(fork):
    fork.replies.append({"chunks": [{"content": "Par"}, {"content": "is."}], "finish": "length"})
    rng = np.random.default_rng(0)
    long_audio = (rng.standard_normal(16000 * 30) * 0.1).astype(np.float32)  # 30 s: two pieces
    history = [
        Message.text("system", "You are a helpful assistant."),
        Message.text("tool_json_schemas", json.dumps([{"type": "function", "function": {"name": "get_weather"}}])),
        Message("human", [Audio(long_audio), Text("where?")]),
        Message("assistant", [Speech("Let me see.", codes=(7, 8, 9), tail_text='<tool_call>function\nget_weather\n{"location": "Paris"}</tool_call>')]),
        Message.text("input", "sunny"),
    ]
    events = run(VLLMBackend(fork.url), history)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Paris."
    assert events[-1].reason == "length"
    body = fork.requests[-1]
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "human", "assistant", "input"]
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather"}}]
    assert body["add_generation_prompt"] is True and body["continue_final_message"] is False
    items = msgs[1]["content"]
    assert [i["type"] for i in items] == ["input_audio", "input_audio", "text"]  # audio before text
    pieces = [decode_wav(i["input_audio"]["data"]) for i in items[:2]]
    assert [len(p) for p in pieces] == [16000 * 25, 16000 * 5]
    np.testing.assert_allclose(np.concatenate(pieces), np.clip(long_audio, -1, 1), atol=1 / 32767 + 1e-6)
    assert msgs[2]["tts_content"] == {"tts_text": "Let me see.", "tts_audio": "<audio_7><audio_8><audio_9>"}
    assert msgs[2]["content"].startswith("<tool_call>function\nget_weather")
    assert msgs[3]["content"] == "sunny"


def test_parsed_tool_calls_stream_in_pieces(fork):
    fork.replies.append({"chunks": [
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, "id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_def", "type": "function", "function": {"name": "search", "arguments": "{bad"}}]},
    ], "finish": "tool_calls"})
    events = run(VLLMBackend(fork.url), [Message.text("human", "weather?")])
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.id, c.name, c.arguments, c.error) for c in calls[:1]] == [("call_abc", "get_weather", {"location": "Paris"}, None)]
    assert calls[0].raw == '<tool_call>function\nget_weather\n{"location": "Paris"}</tool_call>'
    assert calls[1].name == "search" and calls[1].error and "JSON" in calls[1].error
    assert isinstance(events[-1], TurnEnd) and events[-1].reason == "stop"


def test_raw_tool_call_text_is_held_back_and_parsed(fork):
    # a fork started without --tool-call-parser leaves the call in `content`
    fork.replies.append({"chunks": [
        {"content": "One moment. <tool"}, {"content": "_call>function\nget_date"}, {"content": "_time\n{}</tool_call>"},
    ]})
    events = run(VLLMBackend(fork.url), [Message.text("human", "time?")])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "One moment. "
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments, c.error) for c in calls] == [("get_date_time", {}, None)]
    # a closing tag inside a JSON string does not end the call
    fork.replies.append({"chunks": [{"content": '<tool_call>function\nsearch\n{"query": "what is </tool_'},
                                    {"content": 'call>"}</tool_call> done'}]})
    events = run(VLLMBackend(fork.url), [Message.text("human", "q")])
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("search", {"query": "what is </tool_call>"})]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == " done"


def test_retries_transient_errors_then_succeeds(fork):
    fork.replies += [{"status": 503}, {"status": 503}, {"chunks": [{"content": "fine"}]}]
    b = VLLMBackend(fork.url, VLLMSettings(retries=2, backoff_s=0.01))
    events = run(b, [Message.text("human", "hi")])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "fine"
    assert len(fork.requests) == 3 and fork.model_asks == 1


def test_client_error_is_not_retried_and_ends_the_turn_with_its_message(fork):
    fork.replies += [{"status": 400, "message": "max_tokens is too large"}]
    events = run(VLLMBackend(fork.url, VLLMSettings(backoff_s=0.01)), [Message.text("human", "hi")])
    assert len(events) == 1 and events[0].reason == "error"
    assert "400" in events[0].error and "max_tokens is too large" in events[0].error
    assert len(fork.requests) == 1


def test_unreachable_server_and_stalled_server_end_with_an_error():
    events = run(VLLMBackend("http://127.0.0.1:9", VLLMSettings(retries=1, backoff_s=0.01, model="m")), [Message.text("human", "hi")])
    assert events[-1].reason == "error" and "cannot reach" in events[-1].error


def test_stalled_stream_times_out(fork):
    fork.replies.append({"chunks": [{"content": "a"}, {"content": "b"}], "chunk_delay_s": 1.0})
    t = time.perf_counter()
    events = run(VLLMBackend(fork.url, VLLMSettings(read_s=0.3)), [Message.text("human", "hi")])
    assert events[-1].reason == "error" and "0.3" in events[-1].error
    assert time.perf_counter() - t < 1.5


def test_cancel_stops_mid_stream_without_waiting_for_the_server(fork):
    fork.replies.append({"chunks": [{"content": f"w{i} "} for i in range(50)], "chunk_delay_s": 0.05})
    b = VLLMBackend(fork.url)

    async def go():
        cancel = asyncio.Event()
        out = []
        async for e in b.generate([Message.text("human", "hi")], GenerationOptions(), cancel):
            out.append(e)
            if isinstance(e, TextDelta) and len(out) == 3:
                cancel.set()
        return out

    t = time.perf_counter()
    events = asyncio.run(go())
    assert events[-1].reason == "cancelled" and len(events) == 4
    assert time.perf_counter() - t < 1.5


def test_think_reply_reasons_then_speaks(fork):
    fork.replies += [{"chunks": [{"content": "The user greets me."}]}, {"chunks": SPOKEN}]
    events = run(VLLMBackend(fork.url), [Message.text("human", "hi")], GenerationOptions(reply="think"))
    think = "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == "think")
    assert think == "The user greets me."
    assert "".join(e.text for e in events if isinstance(e, TextDelta) and e.channel == "speech") == "Hello there"
    first, second = fork.requests
    assert first["stop"] == ["</think>"] and first["messages"][-1]["content"] == "\n<think>\n"
    assert second["messages"][-1]["content"] == "\n<think>\nThe user greets me.</think>\n\n<tts_start>"
    assert events[-1].usage.completion_tokens == 14 and sum(isinstance(e, TurnEnd) for e in events) == 1


def test_prefix_cache_hits_reported_by_the_server_reach_usage(fork):
    fork.replies += [
        {"chunks": SPOKEN, "usage": {"prompt_tokens": 40, "completion_tokens": 7,
                                     "prompt_tokens_details": {"cached_tokens": 32}}},
        {"chunks": SPOKEN, "usage": {"prompt_tokens": 40, "completion_tokens": 7, "prompt_tokens_details": None}},
        {"chunks": SPOKEN, "usage": {"prompt_tokens": "40", "completion_tokens": 7,
                                     "prompt_tokens_details": {"cached_tokens": "many"}}},
    ]
    b = VLLMBackend(fork.url)
    ends = [run(b, [Message.text("human", "hi")], GenerationOptions(reply="speech"))[-1] for _ in range(3)]
    assert [(e.reason, e.usage.prompt_tokens, e.usage.cached_tokens) for e in ends] == \
        [("stop", 40, 32), ("stop", 40, 0), ("stop", 40, 0)]  # absent or malformed details: 0, the turn goes on


def test_load_backend_spec_and_bad_url():
    b = load_backend("vllm+http://127.0.0.1:8000/v1")
    assert isinstance(b, VLLMBackend) and b.base_url == "http://127.0.0.1:8000"
    from stepvoice.engine.errors import ConfigError

    with pytest.raises(ConfigError):
        VLLMBackend("127.0.0.1:8000")


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("STEPVOICE_VLLM_URL"), reason="set STEPVOICE_VLLM_URL to a vLLM fork server")
def test_live_server_answers_text_and_speech():
    b = VLLMBackend(os.environ["STEPVOICE_VLLM_URL"])
    events = run(b, [Message.text("human", "Say hello in three words.")], GenerationOptions(max_new_tokens=64))
    assert events[-1].reason in ("stop", "length") and any(isinstance(e, TextDelta) for e in events)
    events = run(b, [Message.text("human", "Say hello.")], GenerationOptions(max_new_tokens=128, reply="speech"))
    assert any(isinstance(e, SpeechCodes) for e in events)


def test_api_key_from_the_environment_is_sent(fork, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "k-123")
    run(VLLMBackend(fork.url), [Message.text("human", "hi")])
    monkeypatch.delenv("VLLM_API_KEY")
    run(VLLMBackend(fork.url), [Message.text("human", "hi")])
    assert fork.auth == ["Bearer k-123", None]
