"""What the voice loop shows and logs: the reply as it streams, tool calls, voice changes,
interruptions and errors on one text stream, and each record as a JSON line in the log file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TextIO

from stepvoice.engine.events import Interrupted, TextDelta, ToolCall, ToolResult, TurnEnd, VoiceChanged


class VoiceLoopOutput:
    def __init__(self, out: TextIO, log_path: Path | None = None, on_event: Callable[[Any], None] | None = None):
        self.out = out
        self.log_path = log_path
        self.on_event = on_event
        self.errors: list[str] = []
        self.line_open = False  # a reply line is being printed

    def show(self, event: Any) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if isinstance(event, TextDelta) and event.channel != "think":
            if not self.line_open:
                self.out.write("assistant: ")
                self.line_open = True
            self.out.write(event.text)
            self.out.flush()
        elif isinstance(event, ToolCall):
            self.end_line()
            print(f"[tool] {event.name}({json.dumps(event.arguments, ensure_ascii=False)})", file=self.out)
        elif isinstance(event, ToolResult):
            print(f"[tool] {event.name} -> {'ok' if event.ok else 'failed'}", file=self.out)
        elif isinstance(event, VoiceChanged):
            self.end_line()
            print(f"[voice] {event.name}", file=self.out)
        elif isinstance(event, TurnEnd) and event.error:
            self.error(event.error)

    def emit(self, event: Any) -> None:
        if self.on_event is not None:
            self.on_event(event)
        self.end_line()
        if isinstance(event, Interrupted):
            why = "" if event.reason == "barge-in" else f" ({event.reason})"
            print(f"[interrupted after {event.played_s:.2f} s{why}]", file=self.out, flush=True)
            self.log({"type": "interrupted", "played_s": event.played_s, "reason": event.reason})

    def end_line(self) -> None:
        if self.line_open:
            self.out.write("\n")
            self.out.flush()
            self.line_open = False

    def error(self, message: str) -> None:
        self.end_line()
        self.errors.append(message)
        print(f"error: {message}", file=self.out, flush=True)
        self.log({"type": "error", "message": message})

    def log(self, record: dict) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
