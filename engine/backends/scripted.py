"""A fake engine that plays a YAML script as engine events.

For tests and plugin authors (`--model scripted:FILE.yaml`). The script is a
list of replies consumed one per `generate` call:

    replies:
      - text: "Let me check."
        tool_calls: [{name: get_weather, arguments: {location: Paris}}]
      - text: "It is sunny in Paris."
        speech_codes: [12, 40, 40, 7]
        delay_ms: 20

A reply with `speech_codes` is spoken (text on the "speech" channel, codes
interleaved the TA4 way: 4 codes per text piece); without, plain text.
When the list runs out, the turn ends with reason "script_exhausted".
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

import yaml

from stepvoice.engine.errors import ConfigError
from stepvoice.engine.events import EngineEvent, SpeechCodes, TextDelta, ToolCall, TurnEnd, Usage
from stepvoice.engine.messages import Message
from stepvoice.engine.options import GenerationOptions

MAX_CODE = 6560
CODES_PER_TEXT_PIECE = 4  # TA4: one text token per four speech tokens


@dataclass(frozen=True)
class ScriptedToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ScriptedReply:
    text: str = ""
    speech_codes: tuple[int, ...] = ()
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    delay_ms: float = 0.0  # pause before each emitted event

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "ScriptedReply":
        if isinstance(d, str):
            return cls(text=d)
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: a reply must be a mapping or a string, not {type(d).__name__}")
        unknown = set(d) - {"text", "speech_codes", "tool_calls", "delay_ms"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        codes = d.get("speech_codes") or []
        if not isinstance(codes, list) or not all(isinstance(c, int) and 0 <= c <= MAX_CODE for c in codes):
            raise ConfigError(f"{where}: speech_codes must be a list of integers 0..{MAX_CODE}")
        calls = []
        for j, c in enumerate(d.get("tool_calls") or []):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise ConfigError(f"{where}.tool_calls[{j}]: needs a string 'name'")
            args = c.get("arguments", {})
            if not isinstance(args, dict):
                raise ConfigError(f"{where}.tool_calls[{j}]: 'arguments' must be a mapping")
            calls.append(ScriptedToolCall(c["name"], dict(args), c.get("error")))
        delay = d.get("delay_ms", 0)
        if not isinstance(delay, (int, float)) or delay < 0:
            raise ConfigError(f"{where}: delay_ms must be a number >= 0")
        return cls(str(d.get("text", "")), tuple(codes), tuple(calls), float(delay))


class ScriptedBackend:
    """Plays `replies` in order; records every prompt it was given in `self.requests`."""

    name = "scripted"

    def __init__(self, replies: Sequence[ScriptedReply]):
        self.replies = list(replies)
        self.position = 0
        self.requests: list[tuple[list[Message], GenerationOptions]] = []

    @classmethod
    def from_file(cls, path: str | Path) -> "ScriptedBackend":
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"script file not found: {p}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            loc = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{p}: malformed YAML{loc}: {getattr(e, 'problem', e)}") from None
        return cls.from_data(data, str(p))

    @classmethod
    def from_data(cls, data: Any, where: str = "script") -> "ScriptedBackend":
        if isinstance(data, list):
            data = {"replies": data}
        if not isinstance(data, dict) or not isinstance(data.get("replies"), list):
            raise ConfigError(f"{where}: expected a mapping with a 'replies' list")
        return cls([ScriptedReply.from_dict(r, f"{where}: replies[{i}]") for i, r in enumerate(data["replies"])])

    def checkpoint(self) -> Callable[[], None]:
        """An undo for a discarded speculative reply (assistant.speculation): the replies it took are
        played again and its requests are forgotten, as if it never ran."""
        position, n = self.position, len(self.requests)

        def restore() -> None:
            self.position = position
            del self.requests[n:]

        return restore

    async def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[EngineEvent]:
        self.requests.append((list(messages), options))
        start = time.perf_counter()
        if self.position >= len(self.replies):
            yield TurnEnd("script_exhausted", Usage(elapsed_s=0.0), error="the script has no more replies")
            return
        reply = self.replies[self.position]
        self.position += 1
        emitted = 0
        for event in self._events(reply):
            if reply.delay_ms:
                await asyncio.sleep(reply.delay_ms / 1000)
            else:
                await asyncio.sleep(0)  # let a canceller run, as a real engine would
            if cancel is not None and cancel.is_set():
                yield TurnEnd("cancelled", Usage(completion_tokens=emitted, elapsed_s=time.perf_counter() - start))
                return
            emitted += 1
            yield event
        yield TurnEnd("stop", Usage(completion_tokens=emitted, elapsed_s=time.perf_counter() - start))

    @staticmethod
    def _events(reply: ScriptedReply) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if reply.speech_codes:
            # Interleave like TA4: one word per group of four codes, leftovers at the end.
            words = _split_keep_spaces(reply.text)
            codes = list(reply.speech_codes)
            while words or codes:
                if words:
                    events.append(TextDelta(words.pop(0), "speech"))
                if codes:
                    events.append(SpeechCodes(tuple(codes[:CODES_PER_TEXT_PIECE])))
                    codes = codes[CODES_PER_TEXT_PIECE:]
        elif reply.text:
            events.extend(TextDelta(w, "text") for w in _split_keep_spaces(reply.text))
        for c in reply.tool_calls:
            raw = f"<tool_call>function\n{c.name}\n{json.dumps(c.arguments, ensure_ascii=False)}</tool_call>"
            events.append(ToolCall(c.name, dict(c.arguments), raw=raw, error=c.error))
        return events


def _split_keep_spaces(text: str) -> list[str]:
    """Split into word pieces that concatenate back to `text`."""
    pieces: list[str] = []
    cur = ""
    for ch in text:
        if ch == " " and cur.strip():
            pieces.append(cur)
            cur = ""
        cur += ch
    if cur:
        pieces.append(cur)
    return pieces
