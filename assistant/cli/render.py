"""Printing a reply as it streams: the answer's text on one stream, what the model did on another.

Shared by `ask` (answer on stdout, tool calls on stderr, so `ask > answer.txt` keeps only the answer)
and the typed `chat --text` (everything on the terminal, `assistant:` before each reply).
"""
from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from stepvoice.engine.events import TextDelta, ToolCall, ToolResult, VoiceChanged


class ReplyPrinter:
    """Feed it every event of one or more turns; text is written (and flushed) the moment it arrives.

    `prefix` starts each reply line ("assistant: "); leading whitespace of a reply is dropped, as the
    non-streamed answer's strip() did. `notes` gets tool calls, their results and voice changes.
    """

    def __init__(self, out: TextIO | None = None, notes: TextIO | None = None, prefix: str = ""):
        self.out = out or sys.stdout
        self.notes = notes or sys.stderr
        self.prefix = prefix
        self.line_open = False
        self.wrote = False  # any answer text at all (for a final newline)
        self._calls: dict[str, ToolCall] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, TextDelta) and event.channel != "think":
            self._text(event.text)
        elif isinstance(event, ToolCall):
            self._calls[event.id] = event
            if event.error:
                self._note(f"[{event.name}: {event.error}]")
        elif isinstance(event, ToolResult):
            call = self._calls.get(event.call_id)
            args = json.dumps(call.arguments, ensure_ascii=False) if call else "{}"
            self._note(f"[{event.name}({args}): {'ok' if event.ok else 'failed'}]")
        elif isinstance(event, VoiceChanged):
            self._note(f"[voice: {event.name}]")

    def _text(self, text: str) -> None:
        if not self.line_open:
            text = text.lstrip()
            if not text:
                return
            self.out.write(self.prefix)
            self.line_open = True
        self.out.write(text)
        self.out.flush()
        self.wrote = True

    def _note(self, line: str) -> None:
        if self.notes is self.out:
            self.end_line()
        self.notes.write(line + "\n")
        self.notes.flush()

    def end_line(self) -> None:
        if self.line_open:
            self.out.write("\n")
            self.out.flush()
            self.line_open = False
