"""The OpenAI Realtime (GA) event subset stepvoice speaks: parsing and checking
client events, building server events, PCM16 audio in and out.

Event names and shapes follow the `openai` SDK's `types/realtime` models;
the contract test validates every server event against them. A client event
that is malformed, unknown or not allowed becomes a `ProtocolError`, which
the connection turns into a Realtime `error` event and then goes on.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

PCM_RATE = 24000  # the Realtime API's audio/pcm: 16-bit little-endian mono at 24 kHz
MODEL_RATE = 16000  # what the model hears

CLIENT_EVENTS = frozenset({
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
})


class ProtocolError(Exception):
    """A client event the server cannot act on. `code` and `param` go into the error event."""

    def __init__(self, message: str, code: str = "invalid_request", param: str | None = None, event_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.param = param
        self.event_id = event_id


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# ---- client events --------------------------------------------------------------------


def parse_client_event(raw: str | bytes) -> dict[str, Any]:
    """JSON text -> an event dict with a known `type`, or ProtocolError."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("binary frames are not supported: send JSON text events", "invalid_json") from None
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError(f"malformed JSON: {getattr(e, 'msg', e)}", "invalid_json") from None
    if not isinstance(event, dict):
        raise ProtocolError("an event must be a JSON object", "invalid_json")
    event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    etype = event.get("type")
    if not isinstance(etype, str):
        raise ProtocolError("the event has no string 'type'", "invalid_event", "type", event_id)
    if etype not in CLIENT_EVENTS:
        raise ProtocolError(f"unknown event type {etype!r}", "invalid_event", "type", event_id)
    return event


def require(event: dict, key: str, kind: type | tuple[type, ...], where: str | None = None) -> Any:
    """`event[key]`, checked to be of `kind`."""
    value = event.get(key)
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ProtocolError(f"'{where or key}' must be a {names}", "invalid_value", where or key, event.get("event_id"))
    return value


def optional(mapping: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if mapping.get(key) is None:
        return None
    return require(mapping, key, kind, where)


# ---- audio ----------------------------------------------------------------------------


def decode_pcm16(b64: str, max_bytes: int) -> np.ndarray:
    """base64 PCM16 LE mono -> float32 in [-1, 1]. Refuses more than `max_bytes` of PCM."""
    too_large = ProtocolError(f"audio chunk too large: at most {max_bytes} bytes of PCM per append", "audio_too_large", "audio")
    if len(b64) > (max_bytes // 3 + 1) * 4:  # refuse before decoding: base64 is 4/3 of the bytes
        raise too_large
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("'audio' is not valid base64", "invalid_value", "audio") from None
    if len(data) > max_bytes:
        raise too_large
    if len(data) % 2:
        raise ProtocolError("'audio' must hold whole 16-bit samples (an even number of bytes)", "invalid_value", "audio")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def encode_pcm16(samples: np.ndarray) -> str:
    """float32 [-1, 1] -> base64 PCM16 LE."""
    pcm = (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode("ascii")


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import soxr

    return soxr.resample(np.asarray(x, dtype=np.float32), sr_in, sr_out).astype(np.float32)


# ---- server events --------------------------------------------------------------------


def server_event(etype: str, **fields: Any) -> dict[str, Any]:
    return {"type": etype, "event_id": new_id("event"), **fields}


def error_event(err: ProtocolError) -> dict[str, Any]:
    kind = "server_error" if err.code == "server_error" else "invalid_request_error"
    error: dict[str, Any] = {"type": kind, "code": err.code, "message": str(err)}
    if err.param:
        error["param"] = err.param
    if err.event_id:
        error["event_id"] = err.event_id
    return server_event("error", error=error)


@dataclass
class OutputItem:
    """One item a response produces: an assistant message (text or audio), a client function
    call, or a call of a tool the server runs itself (`mcp_call`, OpenAI's item for server-side tools)."""

    id: str
    kind: str  # "text" | "audio" | "function_call" | "mcp_call"
    text: str = ""  # the text, or the transcript of the audio
    audio_ms: float = 0.0
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    status: str = "in_progress"
    server_label: str = ""
    output: str | None = None
    error: dict | None = None

    def item(self) -> dict[str, Any]:
        """The conversation item (message content uses the output_* part types)."""
        if self.kind == "mcp_call":
            return {"id": self.id, "type": "mcp_call", "server_label": self.server_label, "name": self.name,
                    "arguments": self.arguments, "output": self.output, "error": self.error}
        base = {"id": self.id, "object": "realtime.item", "status": self.status}
        if self.kind == "function_call":
            return {**base, "type": "function_call", "call_id": self.call_id, "name": self.name, "arguments": self.arguments}
        content = [] if self.status == "in_progress" else [
            {"type": "output_audio", "transcript": self.text} if self.kind == "audio" else {"type": "output_text", "text": self.text}
        ]
        return {**base, "type": "message", "role": "assistant", "content": content}

    def part(self, final: bool = False) -> dict[str, Any]:
        """The content part (response.content_part.* events use the bare part types)."""
        if self.kind == "audio":
            return {"type": "audio", "transcript": self.text if final else ""}
        return {"type": "text", "text": self.text if final else ""}


def user_item(item_id: str, text: str | None, has_audio: bool, transcript: str | None = None) -> dict[str, Any]:
    content: list[dict] = []
    if has_audio:  # the transcript appears once input transcription has run
        content.append({"type": "input_audio", **({"transcript": transcript} if transcript is not None else {})})
    if text:
        content.append({"type": "input_text", "text": text})
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed", "content": content}


def function_output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "function_call_output", "call_id": call_id,
            "output": output, "status": "completed"}
