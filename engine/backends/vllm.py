"""Remote engine: StepFun's vLLM fork over HTTP (`--model vllm+http://HOST:PORT`).

The fork serves `/v1/chat/completions` with the model's audio input, spoken
replies (`tts_content`) and tool calls; this client sends our messages in its
format (`vllm_wire.build_payload`), streams the SSE reply back as the same
engine events the local engine yields, retries a request that failed before
any output arrived, and stops between chunks on `cancel`. Speech codes come
back as codes: token2wav stays local.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass, replace
from typing import AsyncIterator, Sequence

import certifi
import httpx

from stepvoice.engine.errors import ConfigError
from stepvoice.engine.events import EngineEvent, TurnEnd, Usage
from stepvoice.engine.messages import Audio, Message
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.backends.vllm_wire import THINK_CLOSE, THINK_OPEN, TTS_START, ReplyDecoder, build_payload

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}


class RemoteError(Exception):
    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class VLLMSettings:
    """How patient the client is. `read_s` bounds the wait for each streamed chunk."""

    model: str | None = None  # served model name; asked from /v1/models when None
    connect_s: float = 5.0
    read_s: float = 120.0
    retries: int = 2  # extra attempts for connection errors and 429/5xx before any output
    backoff_s: float = 0.5  # doubled after each failed attempt
    stream: bool = True
    api_key: str | None = None  # for a server started with --api-key; default: env VLLM_API_KEY


class VLLMBackend:
    """A `Backend` that talks to a vLLM fork server at `base_url` (http://HOST:PORT)."""

    name = "vllm"

    def __init__(self, base_url: str, settings: VLLMSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None):
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"vLLM server URL must start with http:// or https://, not {base_url!r}")
        if url.endswith("/v1"):
            url = url[: -len("/v1")]
        self.base_url = url
        self.settings = settings or VLLMSettings(api_key=os.environ.get("VLLM_API_KEY") or None)
        self._model = self.settings.model
        self._transport = transport
        # One TLS context for every request: httpx would load the CA bundle (0.1-0.4 s) for
        # each new client, on the event loop.
        self._tls = ssl.create_default_context(cafile=certifi.where())
        self.last_payload: dict | None = None  # the last request body (for `ask --json` and tests)

    def _client(self) -> httpx.AsyncClient:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
        timeout = httpx.Timeout(connect=s.connect_s, read=s.read_s, write=s.read_s, pool=s.connect_s)
        return httpx.AsyncClient(base_url=self.base_url, timeout=timeout, headers=headers, transport=self._transport,
                                 verify=self._tls)

    async def model_name(self, client: httpx.AsyncClient) -> str:
        """The served model's name (the fork serves one), asked once."""
        if self._model is None:
            resp = await self._with_retries(lambda: client.get("/v1/models"))
            try:
                self._model = resp.json()["data"][0]["id"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise RemoteError(f"{self.base_url}/v1/models did not name a model", retry=False) from None
        return self._model

    async def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[EngineEvent]:
        start = time.perf_counter()
        audio_s = sum(p.seconds for m in messages for p in m.content if isinstance(p, Audio))
        totals = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        client = await asyncio.to_thread(self._client)  # set-up of pools and proxies: off the loop
        async with client:
            try:
                model = await self.model_name(client)
                if options.reply == "think":
                    # Phase 1: reason until </think>; phase 2: speak after the thought.
                    thought = ReplyDecoder(text_channel="think")
                    think_opts = replace(options, reply="text")
                    payload = build_payload(messages, think_opts, model, stream=self.settings.stream, prefill=THINK_OPEN)
                    payload["stop"] = [THINK_CLOSE]
                    async for ev in self._request(client, payload, thought, cancel):
                        if isinstance(ev, TurnEnd):
                            _add(totals, thought.usage)
                            if ev.reason != "stop":
                                yield _end(ev.reason, totals, audio_s, start, ev.error)
                                return
                        else:
                            yield ev
                    prefill = THINK_OPEN + thought.content + THINK_CLOSE + "\n\n" + TTS_START
                    payload = build_payload(messages, options, model, stream=self.settings.stream, prefill=prefill)
                else:
                    payload = build_payload(messages, options, model, stream=self.settings.stream)
                decoder = ReplyDecoder()
                async for ev in self._request(client, payload, decoder, cancel):
                    if isinstance(ev, TurnEnd):
                        _add(totals, decoder.usage)
                        yield _end(ev.reason, totals, audio_s, start, ev.error)
                        return
                    yield ev
            except RemoteError as e:
                yield _end("error", totals, audio_s, start, str(e))

    async def _request(
        self, client: httpx.AsyncClient, payload: dict, decoder: ReplyDecoder, cancel: asyncio.Event | None
    ) -> AsyncIterator[EngineEvent]:
        """One chat completion; ends with a TurnEnd carrying only the reason."""
        self.last_payload = payload
        if not payload["stream"]:
            resp = await self._with_retries(lambda: client.post("/v1/chat/completions", json=payload), cancel)
            if resp is None:
                yield TurnEnd("cancelled")
                return
            body = _json_body(resp)
            for ev in decoder.message(body):
                yield ev
            yield TurnEnd(_reason(decoder.finish_reason))
            return

        async def open_stream() -> httpx.Response:
            req = client.build_request("POST", "/v1/chat/completions", json=payload)
            return await client.send(req, stream=True)

        resp = await self._with_retries(open_stream, cancel)
        if resp is None:
            yield TurnEnd("cancelled")
            return
        try:
            lines = resp.aiter_lines()
            while True:
                line = await _next_or_cancel(lines, cancel)
                if line is _CANCELLED:
                    yield TurnEnd("cancelled")
                    return
                if line is _END:
                    break
                if not line.startswith("data:"):
                    continue  # blank keep-alive lines, comments, event names
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                try:
                    obj = json.loads(data)
                except json.JSONDecodeError:
                    raise RemoteError(f"the server sent a malformed stream chunk: {data[:80]!r}", retry=False) from None
                if isinstance(obj, dict) and obj.get("error"):
                    raise RemoteError(f"the server reported: {_error_text(obj['error'])}", retry=False)
                for ev in decoder.chunk(obj):
                    yield ev
        except httpx.TimeoutException:
            raise RemoteError(f"no reply from {self.base_url} within {self.settings.read_s:g} s", retry=False) from None
        except httpx.TransportError as e:
            raise RemoteError(f"the connection to {self.base_url} broke: {type(e).__name__}", retry=False) from None
        finally:
            await resp.aclose()
        for ev in decoder.finish():
            yield ev
        yield TurnEnd(_reason(decoder.finish_reason))

    async def _with_retries(self, send, cancel: asyncio.Event | None = None) -> httpx.Response | None:
        """Send until a 2xx, a non-retryable failure, or the retries run out; None if cancelled."""
        s = self.settings
        for attempt in range(s.retries + 1):
            if cancel is not None and cancel.is_set():
                return None
            try:
                resp = await send()
            except httpx.TimeoutException:
                err = RemoteError(f"{self.base_url} did not answer within the timeout", retry=True)
            except httpx.TransportError as e:
                err = RemoteError(f"cannot reach the vLLM server at {self.base_url} ({type(e).__name__})", retry=True)
            else:
                if resp.status_code < 400:
                    return resp
                await resp.aread()
                err = RemoteError(
                    f"the vLLM server answered {resp.status_code}: {_error_text(_maybe_json(resp))}",
                    retry=resp.status_code in RETRY_STATUS,
                )
                await resp.aclose()
            if not err.retry or attempt == s.retries:
                raise err
            log.warning("%s; retrying (%d/%d)", err, attempt + 1, s.retries)
            await asyncio.sleep(s.backoff_s * 2**attempt)
        raise AssertionError("unreachable")


_CANCELLED = object()
_END = object()


async def _next_or_cancel(lines: AsyncIterator[str], cancel: asyncio.Event | None):
    """The next line, or _CANCELLED as soon as `cancel` is set (even mid-wait), or _END."""
    nxt = asyncio.ensure_future(anext(lines, _END))
    if cancel is None:
        return await nxt
    if cancel.is_set():
        nxt.cancel()
        return _CANCELLED
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        done, _ = await asyncio.wait({nxt, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if nxt in done:
        return nxt.result()
    nxt.cancel()
    return _CANCELLED


def _json_body(resp: httpx.Response) -> dict:
    try:
        body = resp.json()
    except ValueError:
        raise RemoteError("the server's reply is not JSON", retry=False) from None
    if not isinstance(body, dict):
        raise RemoteError("the server's reply is not a JSON object", retry=False)
    if body.get("error"):
        raise RemoteError(f"the server reported: {_error_text(body['error'])}", retry=False)
    return body


def _maybe_json(resp: httpx.Response):
    try:
        return resp.json()
    except ValueError:
        return resp.text[:200]


def _error_text(err) -> str:
    if isinstance(err, dict):
        inner = err.get("error", err)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner)[:300]
        return str(inner)[:300]
    return (str(err).strip().splitlines() or [""])[0][:300]


def _reason(finish_reason: str | None) -> str:
    return "length" if finish_reason == "length" else "stop"


def _add(totals: dict, usage: dict) -> None:
    """Sum one request's usage. cached_tokens: vLLM's prefix cache hits, which it reports (OpenAI's
    `prompt_tokens_details`) when started with --enable-prompt-tokens-details; 0 otherwise."""
    for k in ("prompt_tokens", "completion_tokens"):
        totals[k] += _count(usage.get(k))
    details = usage.get("prompt_tokens_details")
    totals["cached_tokens"] += _count(details.get("cached_tokens")) if isinstance(details, dict) else 0


def _count(value) -> int:
    """A token count from the server, 0 when absent or malformed (usage must never end a turn)."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _end(reason: str, totals: dict, audio_s: float, start: float, error: str | None = None) -> TurnEnd:
    usage = Usage(totals["prompt_tokens"], totals["completion_tokens"], audio_s, time.perf_counter() - start,
                  cached_tokens=totals["cached_tokens"])
    return TurnEnd(reason, usage, error=error)

