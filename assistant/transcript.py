"""Save a conversation (Session.history) as JSON: roles, text, spoken replies with their codes,
user audio as length (and transcript when known)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from stepvoice.engine.messages import Audio, Message, Speech, Text


def conversation_record(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, Text):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, Audio):
                parts.append({"type": "audio", "seconds": round(p.seconds, 3), "transcript": p.transcript})
            elif isinstance(p, Speech):
                parts.append({"type": "speech", "text": p.text, "codes": list(p.codes), "tail_text": p.tail_text})
        out.append({"role": m.role, "content": parts})
    return out


def save_conversation(messages: Sequence[Message], path: str | Path) -> Path:
    """Write the conversation to `path` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    lines = ",\n ".join(json.dumps(m, ensure_ascii=False) for m in conversation_record(messages))
    tmp.write_text('{"messages": [\n ' + lines + "\n]}\n", encoding="utf-8")  # one message per line
    tmp.replace(path)  # never leave a half-written file behind
    return path
