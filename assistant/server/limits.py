"""Limits a Realtime client meets before any work is done for it, and tool confirmation over the wire.

`ConnectionGuard.screen(event)` sees every parsed client event before the
protocol code (realtime.py) acts on it, and answers an oversized or abusive
one with a `ProtocolError` (a Realtime `error` event) at once:
- `session.update`: instructions and tool schemas are refused past a size in
  characters (checked at once) and in tokens (counted in a worker thread);
  `max_output_tokens` (also in `response.create`) is clamped to the context;
- `input_audio_buffer.append`: appends shorter than `coalesce_ms` are
  gathered and handed on together (600k one-sample appends cost one VAD pass
  per 20 ms, not 600k), and audio committed without a response is capped;
- conversation history is bounded: past `max_kept_audio_s` of user audio,
  the oldest audio turns keep only their transcript (as compaction does);
- `conversation.item.create`: one item's text is refused past
  `max_item_text_chars`, and a session takes at most `max_session_items`
  items and `max_session_item_chars` characters of item text from its client
  (the conversation keeps every item, so these bound its memory);
- a `mcp_approval_response` item answers a tool `confirm` question that this
  guard asked with an `mcp_approval_request` item (OpenAI's own items for
  approving a server-side tool call).

Limits at the socket (connections per client address, idle close) are in
connection_limits.py.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from stepvoice.assistant.server.protocol import PCM_RATE, ProtocolError, new_id, server_event

log = logging.getLogger(__name__)


@dataclass
class ServerLimits:
    """Per-connection and per-client limits of `stepvoice serve` (beside settings.Limits)."""

    max_instructions_chars: int = 32_000
    max_instructions_tokens: int = 8_000
    max_tools_chars: int = 64_000  # the JSON of session.tools
    max_tools_tokens: int = 16_000
    max_pending_audio_s: float = 120.0  # committed user audio waiting for a response
    max_kept_audio_s: float = 120.0  # user audio kept per session (7.7 MB); older audio keeps its transcript only
    coalesce_ms: float = 20.0  # appends shorter than this are gathered before the VAD sees them
    max_connections_per_client: int = 32
    idle_timeout_s: float = 600.0  # no client event and no response in flight: closed
    output_token_margin: int = 1024  # max_output_tokens <= context - this (room for the prompt)
    max_item_text_chars: int = 64_000  # one client item: its message text parts, or a tool output
    max_session_items: int = 10_000  # items a session takes from its client (each costs ~1 KB kept)
    max_session_item_chars: int = 4_000_000  # item text a session takes from its client, in all

    def __post_init__(self) -> None:
        for name in ("max_instructions_chars", "max_instructions_tokens", "max_tools_chars", "max_tools_tokens",
                     "max_connections_per_client", "max_item_text_chars", "max_session_items",
                     "max_session_item_chars"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1")
        for name in ("max_pending_audio_s", "max_kept_audio_s", "idle_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")


class ConnectionGuard:
    """The limits of one connection. `screen` returns the event to handle, or None when it was absorbed."""

    def __init__(self, conn: Any, limits: ServerLimits | None = None) -> None:
        self.conn = conn
        self.limits = limits or ServerLimits()
        self._small: list[np.ndarray] = []  # appends shorter than coalesce_ms, not handed on yet
        self._small_samples = 0
        self._pending_audio_s = 0.0  # committed audio since the last response
        self._items = 0  # items taken from the client, and their text (characters): never credited back
        self._item_chars = 0
        self._approvals: dict[str, asyncio.Future] = {}
        self._next_bound = 0.0
        self._max_output = _context_tokens(conn) - self.limits.output_token_margin

    # ---- screening ------------------------------------------------------------------

    async def screen(self, event: dict) -> dict | None:
        etype = event.get("type")
        if getattr(self.conn, "responding", False):  # a response (also one the server VAD started) takes the audio
            self._pending_audio_s = 0.0
        now = time.monotonic()
        if now >= self._next_bound:  # at most once a second: history keeps at most max_kept_audio_s of audio
            self._next_bound = now + 1.0
            self.bound_history()
        if etype == "input_audio_buffer.append":
            return self._coalesce(event)
        if self._small:
            if etype == "input_audio_buffer.clear":
                self._drop_small()
            else:  # keep order: the gathered audio goes in before anything else happens
                await self.flush()
        if etype == "session.update":
            await self._check_session(event)
        elif etype == "input_audio_buffer.commit":
            self._check_commit(self._buffer_s())
        elif etype == "conversation.item.create":
            return await self._item(event)
        elif etype == "response.create":
            self._clamp(event.get("response"), "response")
            self._pending_audio_s = 0.0
            self.bound_history()
        return event

    # ---- sizes ----------------------------------------------------------------------

    async def _check_session(self, event: dict) -> None:
        s = event.get("session")
        if not isinstance(s, dict):
            return
        lim = self.limits
        text = s.get("instructions")
        if isinstance(text, str):
            await self._check_size(text, "instructions", lim.max_instructions_chars, lim.max_instructions_tokens,
                                   "session.instructions")
        tools = s.get("tools")
        max_tools = getattr(getattr(self.conn, "limits", None), "max_tools", 64)
        if isinstance(tools, list) and tools and len(tools) <= max_tools:  # too many: the protocol code says so
            schema = _json_upto(tools, lim.max_tools_chars)
            await self._check_size(schema, "tool schemas", lim.max_tools_chars, lim.max_tools_tokens, "session.tools")
        self._clamp(s, "session")

    async def _check_size(self, text: str, what: str, max_chars: int, max_tokens: int, param: str) -> None:
        if len(text) > max_chars:  # at once: no tokenizer pass over megabytes
            raise ProtocolError(f"{what} too long: {len(text):,} characters (at most {max_chars:,})",
                                "invalid_value", param)
        tok = _tokenizer(self.conn)
        if tok is None:
            return
        n = await asyncio.to_thread(lambda: len(tok.encode(text)))  # off the event loop
        if n > max_tokens:
            raise ProtocolError(f"{what} too long: {n:,} tokens (at most {max_tokens:,})", "invalid_value", param)

    def _clamp(self, params: Any, where: str) -> None:
        """max_output_tokens above what the context can hold is clamped (the session shows the value used)."""
        if not isinstance(params, dict):
            return
        m = params.get("max_output_tokens")
        if isinstance(m, int) and not isinstance(m, bool) and m > self._max_output:
            log.info("%s.max_output_tokens %d clamped to %d (the context)", where, m, self._max_output)
            params["max_output_tokens"] = max(1, self._max_output)

    # ---- audio ----------------------------------------------------------------------

    def _coalesce(self, event: dict) -> dict | None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            return event  # the protocol code says what is wrong
        if len(audio) * 3 // 4 >= self.limits.coalesce_ms * PCM_RATE / 1000 * 2:
            if not self._small:
                return event  # the usual case: an append of at least 20 ms goes straight on
            pcm = _pcm(audio)
            if pcm is None:
                return event
            self._small.append(pcm)
            return self._gathered(event)
        pcm = _pcm(audio)
        if pcm is None:
            return event
        self._small.append(pcm)
        self._small_samples += len(pcm)
        if self._small_samples >= self.limits.coalesce_ms * PCM_RATE / 1000:
            return self._gathered(event)
        return None

    def _gathered(self, event: dict) -> dict:
        pcm = np.concatenate(self._small)
        self._drop_small()
        return {**event, "audio": base64.b64encode(pcm.tobytes()).decode("ascii")}

    def _drop_small(self) -> None:
        self._small.clear()
        self._small_samples = 0

    async def flush(self) -> None:
        """Hand the gathered short appends on (before a commit, a response, anything else)."""
        if self._small:
            await self.conn._on_input_audio_buffer_append(self._gathered({"type": "input_audio_buffer.append"}))

    def _buffer_s(self) -> float:
        return getattr(self.conn, "_audio_samples", 0) / PCM_RATE

    def _check_commit(self, seconds: float) -> None:
        if self._pending_audio_s + seconds > self.limits.max_pending_audio_s:
            raise ProtocolError(f"too much committed audio without a response ({self._pending_audio_s + seconds:.0f} s; "
                                f"at most {self.limits.max_pending_audio_s:g} s): send response.create or clear",
                                "audio_too_large", "audio")
        self._pending_audio_s += seconds

    def bound_history(self) -> None:
        session = getattr(self.conn, "session", None)
        if session is None or getattr(self.conn, "responding", False):
            return
        history = list(session.history)
        # the conversation's items point at history turns too (and at turns compaction already
        # replaced): those keep no audio at all, or they would hold it after history let it go
        seen = {id(m) for m in history}
        entries = getattr(getattr(self.conn, "conversation", None), "entries", {})
        gone = [m for e in entries.values() for m in getattr(e, "messages", ()) if id(m) not in seen]
        bound_audio(gone + history, self.limits.max_kept_audio_s, newest_first_from=len(gone))

    # ---- items ----------------------------------------------------------------------

    async def _item(self, event: dict) -> dict | None:
        item = event.get("item")
        if not isinstance(item, dict):
            return event
        if item.get("type") == "mcp_approval_response":
            await self._answer(item)
            return None
        chars = _item_text_chars(item)
        self._check_item_text(chars)
        content = item.get("content")
        if isinstance(content, list):
            seconds = sum(len(p.get("audio", "")) * 3 / 4 / 2 / PCM_RATE for p in content
                          if isinstance(p, dict) and isinstance(p.get("audio"), str))
            if seconds:
                self._check_commit(seconds)
        self._items += 1
        self._item_chars += chars
        return event

    def _check_item_text(self, chars: int) -> None:
        lim = self.limits
        if chars > lim.max_item_text_chars:
            raise ProtocolError(f"item text too long: {chars:,} characters (at most {lim.max_item_text_chars:,})",
                                "invalid_value", "item.content")
        if self._items >= lim.max_session_items or self._item_chars + chars > lim.max_session_item_chars:
            raise ProtocolError(f"this session has taken {self._items:,} items ({self._item_chars:,} characters of "
                                f"text) from its client, the most one session takes "
                                f"({lim.max_session_items:,} items, {lim.max_session_item_chars:,} characters): "
                                "open a new session", "conversation_full", "item")

    # ---- tool confirmation ------------------------------------------------------------

    async def confirm(self, call: Any, tool: Any) -> bool:
        """Ask the client: an `mcp_approval_request` item; the answer is an `mcp_approval_response` item."""
        from stepvoice.tools.policy import mcp_server_of

        item_id = new_id("mcpr")
        item = {"id": item_id, "object": "realtime.item", "type": "mcp_approval_request",
                "server_label": mcp_server_of(tool) or "stepvoice", "name": call.name,
                "arguments": json.dumps(call.arguments, ensure_ascii=False)}
        future = asyncio.get_running_loop().create_future()
        self._approvals[item_id] = future
        try:
            await self.conn.send(server_event("conversation.item.added", item=item, previous_item_id=None))
            await self.conn.send(server_event("conversation.item.done", item=item, previous_item_id=None))
            return bool(await future)
        finally:
            self._approvals.pop(item_id, None)

    async def _answer(self, item: dict) -> None:
        rid = item.get("approval_request_id")
        approve = item.get("approve")
        if not isinstance(rid, str) or not isinstance(approve, bool):
            raise ProtocolError("an mcp_approval_response needs approval_request_id (string) and approve (boolean)",
                                "invalid_value", "item")
        future = self._approvals.get(rid)
        if future is None or future.done():
            raise ProtocolError(f"no tool call waits for approval {rid!r}", "item_not_found", "item.approval_request_id")
        future.set_result(approve)
        answer = {"id": item.get("id") if isinstance(item.get("id"), str) else new_id("mcpa"), "object": "realtime.item",
                  "type": "mcp_approval_response", "approval_request_id": rid, "approve": approve}
        await self.conn.send(server_event("conversation.item.added", item=answer, previous_item_id=rid))
        await self.conn.send(server_event("conversation.item.done", item=answer, previous_item_id=rid))

    def install(self) -> None:
        """Make this connection the one asked to confirm tool calls made under it (tools.policy)."""
        from stepvoice.tools.policy import CONFIRMER

        CONFIRMER.set(self.confirm)

    def close(self) -> None:
        for future in self._approvals.values():
            if not future.done():
                future.set_result(False)


def bound_audio(messages: list, max_audio_s: float, newest_first_from: int = 0) -> int:
    """Keep at most `max_audio_s` of user audio in `messages` (the newest kept; those before index
    `newest_first_from` keep none): older audio parts become their transcript, or a short note when
    none is known. Messages are changed in place (the Realtime conversation points at the same
    objects). Returns how many parts were replaced."""
    from stepvoice.engine.messages import Audio, Text

    total = 0.0
    replaced = 0
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        if not any(isinstance(p, Audio) for p in msg.content):
            continue
        parts, changed = [], False
        for p in msg.content:
            if isinstance(p, Audio):
                total += p.seconds
                if total > max_audio_s or i < newest_first_from:
                    parts.append(Text(p.transcript if p.transcript else f"[earlier audio, {p.seconds:.0f} s, not kept]"))
                    replaced += 1
                    changed = True
                    continue
            parts.append(p)
        if changed:
            msg.content[:] = parts
    return replaced


def _json_upto(items: list, max_chars: int) -> str:
    """JSON of `items`, stopping (one item past) once it is longer than `max_chars`: enough to refuse it."""
    parts, size = [], 0
    for item in items:
        parts.append(json.dumps(item, ensure_ascii=False, default=str))
        size += len(parts[-1]) + 2
        if size > max_chars:
            break
    return "[" + ", ".join(parts) + "]"


def _item_text_chars(item: dict) -> int:
    """Characters of text a client item brings: its content parts' text and transcripts, a tool
    call's output or arguments (what the conversation and history keep)."""
    texts = [item.get(key) for key in ("output", "arguments")]
    content = item.get("content")
    if isinstance(content, list):
        texts += [p.get(key) for p in content if isinstance(p, dict) for key in ("text", "transcript")]
    return sum(len(t) for t in texts if isinstance(t, str))


def _pcm(b64: str) -> np.ndarray | None:
    try:
        data = base64.b64decode(b64, validate=True)
    except ValueError:
        return None
    if len(data) % 2:
        return None
    return np.frombuffer(data, dtype="<i2").copy()


def _tokenizer(conn: Any) -> Any:
    """The tokenizer of the connection's backend, else the factory's (`serve` sets it from the shared
    model); None for engines without one (the scripted fake): then only characters are counted."""
    session = getattr(conn, "session", None)
    for tok in (getattr(getattr(session, "backend", None), "tokenizer", None),
                getattr(getattr(conn, "factory", None), "tokenizer", None)):
        if tok is not None and hasattr(tok, "encode"):
            return tok
    return None


def _context_tokens(conn: Any) -> int:
    config = getattr(getattr(conn, "factory", None), "config", None)
    context = getattr(config, "context", None)
    return int(getattr(context, "max_context_tokens", 16384))


__all__ = ["ServerLimits", "ConnectionGuard", "bound_audio"]
