"""The Realtime conversation of one connection: items in order, each with its
`previous_item_id`, and where each sits in the assistant session's history.

Clients rebuild the transcript from `previous_item_id` (the agents SDK does),
so every item added here (user, assistant, function call, its output, server
tool call) points at the item before it. `messages` links an item to the
history turn(s) it became, so `conversation.item.delete` can remove them and
input transcription can attach the transcript to the right turn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepvoice.engine.messages import Message


@dataclass
class Entry:
    item: dict[str, Any]  # the item as the client sees it (kept current)
    messages: list[Message] = field(default_factory=list)  # its turns in the session's history
    audio_ms: float = 0.0  # assistant audio sent for it (truncate bounds)


class Conversation:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.entries: dict[str, Entry] = {}

    @property
    def last_id(self) -> str | None:
        return self.order[-1] if self.order else None

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.entries

    def get(self, item_id: str) -> Entry | None:
        return self.entries.get(item_id)

    def add(self, item: dict[str, Any], messages: list[Message] | None = None, after: str | None = None,
            at_end: bool = True) -> tuple[Entry, str | None]:
        """Append `item` (or insert it after `after`; `at_end=False` with `after=None` = at the root).
        Returns its entry and its previous_item_id."""
        entry = Entry(item, list(messages or []))
        if at_end:
            prev = self.last_id
            self.order.append(item["id"])
        else:
            index = self.order.index(after) + 1 if after is not None else 0
            prev = self.order[index - 1] if index > 0 else None
            self.order.insert(index, item["id"])
        self.entries[item["id"]] = entry
        return entry, prev

    def previous_of(self, item_id: str) -> str | None:
        i = self.order.index(item_id)
        return self.order[i - 1] if i > 0 else None

    def remove(self, item_id: str) -> Entry:
        self.order.remove(item_id)
        return self.entries.pop(item_id)

    def audio_before(self, item_id: str) -> float | None:
        """Assistant audio (ms) between the latest user message and `item_id`: where the session's
        `truncate_last_reply` starts counting. None when a user message follows the item (too old to cut)."""
        index = self.order.index(item_id)
        later = self.order[index + 1:]
        if any(self.entries[i].item.get("role") == "user" for i in later):
            return None
        offset = 0.0
        for i in reversed(self.order[:index]):
            entry = self.entries[i]
            if entry.item.get("role") == "user":
                break
            offset += entry.audio_ms
        return offset

    def history_anchor(self, after: str | None) -> Message | None:
        """The last history turn at or before item `after` (where an inserted item's turn goes)."""
        if after is None:
            return None
        for item_id in reversed(self.order[: self.order.index(after) + 1]):
            msgs = self.entries[item_id].messages
            if msgs:
                return msgs[-1]
        return None
