"""What a Realtime client configures with `session.update`, checked and kept as dataclasses.

Defaults are OpenAI's: server VAD on (threshold 0.5, 300 ms pre-roll, 500 ms
silence), audio output, the default voice. `session.update` is validated field
by field, as OpenAI does: a bad field is one `error` event and every good
field of the same update still applies (`apply_update` returns both).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

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
    voice: str | None = None  # the bank voice the session speaks with
    voice_name: str | None = None  # the name the client asked for (echoed back, e.g. "alloy")
    tools: list[dict] = field(default_factory=list)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    max_output_tokens: int | None = None
    transcription: dict | None = None  # audio.input.transcription: None = off

    @property
    def client_tool_names(self) -> tuple[str, ...]:
        return tuple(t["function"]["name"] for t in self.tools)

    def copy(self) -> "SessionSettings":
        return replace(self, tools=list(self.tools), output_modalities=list(self.output_modalities))

    def wire(self, model: str) -> dict:
        return {
            "type": "realtime",
            "model": model,
            "instructions": self.instructions or "",
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens or "inf",
            "tools": [{"type": "function", **t["function"]} for t in self.tools],
            "tool_choice": "auto",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": PCM_RATE},
                          **({"transcription": self.transcription} if self.transcription else {}),
                          "turn_detection": self.turn_detection.wire() if self.turn_detection else None},
                "output": {"format": {"type": "audio/pcm", "rate": PCM_RATE},
                           "voice": self.voice_name or self.voice or "default"},
            },
        }


def apply_update(current: SessionSettings, s: dict, *, limits: Limits, resolve_voice: Callable[[str], str | None],
                 voices: Callable[[], Sequence[str]], eid: str | None) -> tuple[SessionSettings, list[ProtocolError]]:
    """The settings after `session.update` `s`, and one error per field that was refused."""
    new = current.copy()
    errors: list[ProtocolError] = []

    def field_(fn: Callable[[], None]) -> None:
        try:
            fn()
        except ProtocolError as e:
            e.event_id = e.event_id or eid
            errors.append(e)

    def instructions() -> None:
        value = s["instructions"]
        if value is not None and not isinstance(value, str):
            raise ProtocolError("session.instructions must be a string", "invalid_value", "session.instructions", eid)
        new.instructions = value

    def modalities() -> None:
        new.output_modalities = output_modalities(s["output_modalities"], "session.output_modalities", eid)

    def max_tokens() -> None:
        new.max_output_tokens = max_output_tokens(s["max_output_tokens"], "session.max_output_tokens", eid)

    def tools() -> None:
        if not isinstance(s["tools"], list):
            raise ProtocolError("session.tools must be a list", "invalid_value", "session.tools", eid)
        new.tools = client_tools(s["tools"], limits.max_tools, eid)

    for key, fn in (("instructions", instructions), ("output_modalities", modalities),
                    ("max_output_tokens", max_tokens), ("tools", tools)):
        if key in s:
            field_(fn)
    if "modalities" in s and "output_modalities" not in s:  # the beta name, still sent by older clients
        field_(lambda: setattr(new, "output_modalities", output_modalities(s["modalities"], "session.modalities", eid)))

    audio = s.get("audio")
    if audio is not None and not isinstance(audio, dict):
        errors.append(ProtocolError("session.audio must be an object", "invalid_value", "session.audio", eid))
        audio = {}
    audio = audio or {}
    inp = audio.get("input") if isinstance(audio.get("input"), dict) else {}
    out = audio.get("output") if isinstance(audio.get("output"), dict) else {}
    for where, part in (("input", audio.get("input")), ("output", audio.get("output"))):
        if part is not None and not isinstance(part, dict):
            errors.append(ProtocolError(f"session.audio.{where} must be an object", "invalid_value",
                                        f"session.audio.{where}", eid))
    for where, fmt in (("input", inp.get("format")), ("output", out.get("format"))):
        if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type", "audio/pcm") == "audio/pcm"
                                    and fmt.get("rate", PCM_RATE) == PCM_RATE):
            errors.append(ProtocolError(f"session.audio.{where}.format: only audio/pcm at {PCM_RATE} Hz is supported",
                                        "unsupported_format", f"session.audio.{where}.format", eid))
    if "turn_detection" in inp:
        field_(lambda: setattr(new, "turn_detection", turn_detection(inp["turn_detection"], eid)))
    if "transcription" in inp:
        field_(lambda: setattr(new, "transcription", transcription(inp["transcription"], eid)))
    if "voice" in out:
        def voice() -> None:
            requested = out["voice"]
            requested = requested.get("id") if isinstance(requested, dict) else requested
            if not isinstance(requested, str) or not requested:
                raise ProtocolError("session.audio.output.voice must be a voice name", "invalid_value",
                                    "session.audio.output.voice", eid)
            bank = resolve_voice(requested)
            if bank is None:
                raise ProtocolError(f"unknown voice {requested!r}; available: {', '.join(voices())} "
                                    "(or an OpenAI voice name)", "invalid_value", "session.audio.output.voice", eid)
            new.voice, new.voice_name = bank, requested
        field_(voice)
    return new, errors


def output_modalities(mods: Any, where: str, eid: str | None) -> list[str]:
    if not isinstance(mods, list) or not mods or any(m not in ("text", "audio") for m in mods):
        raise ProtocolError(f"{where} must be ['text'] or ['audio']", "invalid_value", where, eid)
    return ["audio"] if "audio" in mods else ["text"]  # audio always comes with its transcript


def max_output_tokens(m: Any, where: str, eid: str | None) -> int | None:
    if not (m is None or m == "inf" or (isinstance(m, int) and not isinstance(m, bool) and m >= 1)):
        raise ProtocolError(f"{where} must be a positive integer or 'inf'", "invalid_value", where, eid)
    return None if m in (None, "inf") else m


def transcription(t: Any, eid: str | None) -> dict | None:
    """Any transcription model name is accepted: the model's own ASR preset does the work."""
    if t is None:
        return None
    if not isinstance(t, dict):
        raise ProtocolError("audio.input.transcription must be an object or null", "invalid_value",
                            "session.audio.input.transcription", eid)
    out = {k: t[k] for k in ("model", "language", "prompt") if isinstance(t.get(k), str)}
    out.setdefault("model", "step-audio-2-asr")
    return out


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
