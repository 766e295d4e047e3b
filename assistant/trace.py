"""Per-turn latency trace of the voice loop.

Marks are clock times (seconds, `time.perf_counter` or the audio backend's
clock): end of speech -> endpoint (the silence hangover ran out) -> first
token -> first speech code -> first PCM -> playback start. Printed with
`--trace` and written as one JSON line per turn to the session log.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

MARKS = ("endpoint", "first_token", "first_code", "first_pcm", "playback_start")


@dataclass
class TurnTrace:
    turn: int
    speech_start: float  # clock time speech was detected
    speech_end: float  # end of the last speech frame (endpoint - hangover)
    endpoint: float  # the utterance was complete (hangover over) and handed to the session
    hangover_s: float
    user_s: float = 0.0  # utterance length
    first_token: float | None = None  # first engine event (text, code or tool call)
    first_code: float | None = None
    first_pcm: float | None = None  # first AudioChunk from token2wav
    playback_start: float | None = None  # the speaker took the first sample of the reply
    done: float | None = None
    end_reason: str = ""
    interrupted: bool = False
    played_s: float = 0.0  # reply audio actually handed to the speaker
    reply_text: str = ""
    speculation: str = "off"  # committed | discarded | off (assistant.speculation)

    @property
    def complete(self) -> bool:
        """Every mark of a spoken reply is present and in order."""
        times = [getattr(self, m) for m in MARKS]
        if any(t is None for t in times):
            return False
        return all(a <= b + 1e-9 for a, b in zip([self.speech_end] + times, times))

    def since_endpoint_ms(self) -> dict[str, float | None]:
        """Each mark in ms after the endpoint; the hangover is listed on its own."""
        out: dict[str, float | None] = {"hangover": self.hangover_s * 1000}
        for m in MARKS[1:]:
            t = getattr(self, m)
            out[m] = None if t is None else (t - self.endpoint) * 1000
        return out

    def line(self) -> str:
        parts = [f"turn {self.turn}: hangover {self.hangover_s * 1000:.0f} ms"]
        labels = {"first_token": "first token", "first_code": "first code", "first_pcm": "first PCM",
                  "playback_start": "playback"}
        for key, ms in self.since_endpoint_ms().items():
            if key == "hangover":
                continue
            parts.append(f"{labels[key]} {'-' if ms is None else f'{ms:.1f} ms'}")
        tail = f" | speculation: {self.speculation}"
        tail += f" | interrupted after {self.played_s:.2f} s" if self.interrupted else ""
        return "[trace] " + " -> ".join(parts) + tail

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ms_after_endpoint"] = self.since_endpoint_ms()
        d["complete"] = self.complete
        return d
