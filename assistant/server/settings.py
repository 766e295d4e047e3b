"""What a Realtime client configures with `session.update`, checked and kept as dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from stepvoice.assistant.server.protocol import PCM_RATE, ProtocolError


@dataclass
class Limits:
    max_append_bytes: int = 2 * 1024 * 1024  # PCM per append (about 44 s at 24 kHz)
    max_buffer_s: float = 300.0  # uncommitted input audio
    max_text_chars: int = 20000  # one user text item
    max_tools: int = 64


@dataclass
class TurnDetection:
    """`server_vad` settings (semantic_vad is served by the same detector)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    type: str = "server_vad"

    def wire(self) -> dict:
        return {"type": self.type, "threshold": self.threshold, "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms, "create_response": self.create_response,
                "interrupt_response": self.interrupt_response}


@dataclass
class SessionSettings:
    """What `session.update` sets; `tools` are client-side function tools in chat form."""

    instructions: str | None = None
    voice: str | None = None
    tools: list[dict] = field(default_factory=list)
    turn_detection: TurnDetection | None = None
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    max_output_tokens: int | None = None

    @property
    def client_tool_names(self) -> tuple[str, ...]:
        return tuple(t["function"]["name"] for t in self.tools)

    def wire(self, model: str) -> dict:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "model": model,
            "instructions": self.instructions or "",
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens or "inf",
            "tools": [{"type": "function", **t["function"]} for t in self.tools],
            "tool_choice": "auto",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": PCM_RATE},
                          "turn_detection": self.turn_detection.wire() if self.turn_detection else None},
                "output": {"format": {"type": "audio/pcm", "rate": PCM_RATE}, "voice": self.voice or "default"},
            },
        }


def client_tools(tools: Sequence[Any], max_tools: int, eid: str | None) -> list[dict]:
    """Realtime function tools -> chat-form schemas the model reads in its tool_json_schemas turn."""
    if len(tools) > max_tools:
        raise ProtocolError(f"at most {max_tools} tools", "invalid_value", "session.tools", eid)
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type", "function") != "function":
            raise ProtocolError(f"session.tools[{i}]: only function tools are supported", "invalid_value",
                                f"session.tools[{i}]", eid)
        name = t.get("name")
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ProtocolError(f"session.tools[{i}].name must be a name of letters, digits, _ or -", "invalid_value",
                                f"session.tools[{i}].name", eid)
        params = t.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise ProtocolError(f"session.tools[{i}].parameters must be a JSON schema object", "invalid_value",
                                f"session.tools[{i}].parameters", eid)
        out.append({"type": "function", "function": {"name": name, "description": str(t.get("description") or ""),
                                                     "parameters": params}})
    return out


def turn_detection(td: Any, eid: str | None) -> TurnDetection | None:
    if td is None:
        return None
    if not isinstance(td, dict) or td.get("type") not in ("server_vad", "semantic_vad"):
        raise ProtocolError("turn_detection.type must be server_vad or semantic_vad (or null)", "invalid_value",
                            "session.audio.input.turn_detection", eid)
    out = TurnDetection(type=td["type"])
    for key, kind in (("threshold", (int, float)), ("prefix_padding_ms", int), ("silence_duration_ms", int),
                      ("create_response", bool), ("interrupt_response", bool)):
        if td.get(key) is not None:
            value = td[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ProtocolError(f"turn_detection.{key} has the wrong type", "invalid_value",
                                    f"session.audio.input.turn_detection.{key}", eid)
            setattr(out, key, value)
    if not 0 < out.threshold < 1 or out.silence_duration_ms < 50 or out.prefix_padding_ms < 0:
        raise ProtocolError("turn_detection: threshold in (0, 1), silence_duration_ms >= 50, prefix_padding_ms >= 0",
                            "invalid_value", "session.audio.input.turn_detection", eid)
    return out
