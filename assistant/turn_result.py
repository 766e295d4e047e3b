"""What one `Session.respond` produced, gathered from its events (for `ask`, `run` and their JSON)."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stepvoice.engine.events import AudioChunk, Event, SpeechCodes, TextDelta, ToolCall, ToolResult, TurnEnd, VoiceChanged


@dataclass
class TurnResult:
    text: str = ""  # what the assistant said or wrote (speech text and text channels)
    think: str = ""
    speech_codes: list[int] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    results: dict[str, ToolResult] = field(default_factory=dict)  # by call id
    voices: list[VoiceChanged] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    sample_rate: int = 24000
    end: TurnEnd | None = None
    first_event_s: float | None = None  # seconds from start to the first event
    first_audio_s: float | None = None

    def add(self, event: Event, since: float) -> None:
        now = time.perf_counter() - since
        if self.first_event_s is None:
            self.first_event_s = now
        if isinstance(event, TextDelta):
            if event.channel == "think":
                self.think += event.text
            else:
                self.text += event.text
        elif isinstance(event, SpeechCodes):
            self.speech_codes.extend(event.codes)
        elif isinstance(event, ToolCall):
            self.calls.append(event)
        elif isinstance(event, ToolResult):
            self.results[event.call_id] = event
        elif isinstance(event, VoiceChanged):
            self.voices.append(event)
        elif isinstance(event, AudioChunk):
            if self.first_audio_s is None:
                self.first_audio_s = now
            self.audio.append(event.pcm)
            self.sample_rate = event.sample_rate
        elif isinstance(event, TurnEnd):
            self.end = event

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)

    def tool_calls(self) -> list[dict[str, Any]]:
        out = []
        for c in self.calls:
            r = self.results.get(c.id)
            out.append({"id": c.id, "name": c.name, "arguments": c.arguments,
                        "result": r.content if r else None, "ok": r.ok if r else None,
                        "elapsed_s": round(r.elapsed_s, 4) if r else None})
        return out

    def usage(self) -> dict[str, Any]:
        return dataclasses.asdict(self.end.usage) if self.end else {}

    def write_wav(self, path: str | Path) -> Path:
        import soundfile as sf

        path = Path(path)
        pcm = np.clip(self.pcm, -1.0, 1.0)
        sf.write(str(path), pcm, self.sample_rate, subtype="PCM_16")
        return path


def event_record(event: Event, t: float) -> dict[str, Any]:
    """One JSON-ready line for a transcript (audio as its length, not its samples)."""
    kind = type(event).__name__
    if isinstance(event, AudioChunk):
        body: dict[str, Any] = {"samples": int(len(event.pcm)), "sample_rate": event.sample_rate}
    elif isinstance(event, TurnEnd):
        body = {"reason": event.reason, "usage": dataclasses.asdict(event.usage), "error": event.error,
                "token_ids": list(event.token_ids)}
    elif isinstance(event, ToolResult):
        body = {"call_id": event.call_id, "name": event.name, "content": event.content, "ok": event.ok,
                "elapsed_s": round(event.elapsed_s, 4)}
    elif isinstance(event, SpeechCodes):
        body = {"codes": list(event.codes)}
    else:
        body = {k: v for k, v in dataclasses.asdict(event).items()}
    return {"t": round(t, 4), "event": kind, **body}
