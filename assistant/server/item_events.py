"""The `conversation.item.*` events of a Realtime connection: create (message or function
output), retrieve, delete and truncate, and how each reaches the session's history.

A mixin of `RealtimeConnection` (realtime.py), which owns all the state these handlers use
(`conversation`, `session`, `run`, `limits`, `factory`) and dispatches `_on_<event type>` to
them; split out so that each file keeps one part of the protocol.
"""
from __future__ import annotations

from stepvoice.engine.messages import Message
from stepvoice.assistant.server.items import ItemError, message_from_item, wire_message
from stepvoice.assistant.server.protocol import ProtocolError, function_output_item, new_id, require, server_event


class ConversationItemEvents:
    """conversation.item.create / retrieve / delete / truncate (see the module doc)."""

    def _append_history(self, message: Message, after: Message | None = None, at_root: bool = False) -> None:
        """Add a turn to the session's history in place (the session keeps its reply alignment)."""
        history = self._session().history
        if at_root:
            history.insert(0, message)
        elif after is not None and any(m is after for m in history):
            history.insert(next(i for i, m in enumerate(history) if m is after) + 1, message)
        else:
            history.append(message)

    async def _on_conversation_item_create(self, event: dict) -> None:
        item = require(event, "item", dict)
        itype = item.get("type", "message")
        handler = getattr(self, f"_create_{itype}", None) if isinstance(itype, str) else None
        if handler is None:
            raise ProtocolError(f"item.type {itype!r} cannot be created (message or function_call_output)",
                                "invalid_value", "item.type")
        prev = event.get("previous_item_id")
        if prev is not None and prev != "root" and (not isinstance(prev, str) or prev not in self.conversation):
            raise ProtocolError(f"previous_item_id {prev!r} is not in this conversation", "item_not_found",
                                "previous_item_id")
        item_id = item.get("id") if isinstance(item.get("id"), str) and item.get("id") else new_id("item")
        if item_id in self.conversation:
            raise ProtocolError(f"an item with id {item_id!r} already exists", "invalid_value", "item.id")
        await handler(item, item_id, prev)

    async def _create_message(self, item: dict, item_id: str, prev: str | None) -> None:
        try:
            message = message_from_item(item, self.limits)
        except ItemError as e:
            raise ProtocolError(str(e), "invalid_value", e.param) from None
        wire = wire_message(item_id, item)
        at_end = prev is None or prev == self.conversation.last_id
        anchor = None if at_end or prev == "root" else self.conversation.history_anchor(prev)
        entry, previous = self.conversation.add(wire, [message], after=None if prev == "root" else prev, at_end=at_end)
        self._later(lambda: self._append_history(message, anchor, at_root=prev == "root"))
        await self.send(server_event("conversation.item.added", item=wire, previous_item_id=previous))
        await self.send(server_event("conversation.item.done", item=wire, previous_item_id=previous))

    async def _create_function_call_output(self, item: dict, item_id: str, prev: str | None) -> None:
        call_id = require(item, "call_id", str, "item.call_id")
        output = require(item, "output", str, "item.output")
        pending = self.factory.pending_calls(self.session) if self.session is not None else []
        waiting = [c for c in pending if c not in self._answered]
        if call_id not in waiting:
            raise ProtocolError(f"no pending client tool call {call_id!r} (pending: {', '.join(waiting) or 'none'})",
                                "invalid_value", "item.call_id")
        self._answered.add(call_id)  # its output may wait for the running response to end
        done = function_output_item(item_id, call_id, output)
        entry, previous = self.conversation.add(done)

        def add() -> None:
            self._answered.discard(call_id)
            session = self._session()
            session.add_tool_output(call_id, output)
            entry.messages = list(session.history[-1:])

        self._later(add)
        await self.send(server_event("conversation.item.added", item=done, previous_item_id=previous))
        await self.send(server_event("conversation.item.done", item=done, previous_item_id=previous))

    async def _on_conversation_item_retrieve(self, event: dict) -> None:
        item_id = require(event, "item_id", str)
        entry = self.conversation.get(item_id)
        if entry is None:
            raise ProtocolError(f"no item {item_id!r} in this conversation", "item_not_found", "item_id")
        await self.send(server_event("conversation.item.retrieved", item=entry.item))

    async def _on_conversation_item_delete(self, event: dict) -> None:
        item_id = require(event, "item_id", str)
        if item_id not in self.conversation:
            raise ProtocolError(f"no item {item_id!r} in this conversation", "item_not_found", "item_id")
        if self.responding and any(o.id == item_id for o in self.run.output):
            raise ProtocolError("the item belongs to the response in progress: cancel it first",
                                "conversation_already_has_active_response", "item_id")
        entry = self.conversation.remove(item_id)

        def drop() -> None:
            if entry.messages and self.session is not None:
                gone = {id(m) for m in entry.messages}
                self.session.history[:] = [m for m in self.session.history if id(m) not in gone]

        self._later(drop)
        await self.send(server_event("conversation.item.deleted", item_id=item_id))

    async def _on_conversation_item_truncate(self, event: dict) -> None:
        item_id = require(event, "item_id", str)
        content_index = require(event, "content_index", int)
        audio_end_ms = require(event, "audio_end_ms", int)
        entry = self.conversation.get(item_id)
        if entry is None:
            raise ProtocolError(f"no item {item_id!r} in this conversation", "item_not_found", "item_id")
        item = entry.item
        if item.get("type") != "message" or item.get("role") != "assistant":
            raise ProtocolError("only assistant message items can be truncated", "invalid_value", "item_id")
        content = item.get("content") or []
        playing = self.responding and self.run.current is not None and self.run.current.id == item_id
        if not playing and not (0 <= content_index < len(content) and content[content_index].get("type") == "output_audio"):
            raise ProtocolError(f"content_index {content_index} is not an audio part of item {item_id!r}",
                                "invalid_value", "content_index")
        if playing and content_index != 0:
            raise ProtocolError(f"content_index {content_index} is not an audio part of item {item_id!r}",
                                "invalid_value", "content_index")
        if audio_end_ms < 0:
            raise ProtocolError("audio_end_ms must be >= 0", "invalid_value", "audio_end_ms")
        if playing:
            self.run.mute()  # the client stopped playing it: nothing more of it is sent
            await self._cancel_response("client_cancelled")
        if audio_end_ms > round(entry.audio_ms):
            raise ProtocolError(f"audio_end_ms {audio_end_ms} is beyond the item's audio ({round(entry.audio_ms)} ms)",
                                "invalid_value", "audio_end_ms")
        heard_text = ""
        offset = self.conversation.audio_before(item_id)
        if offset is not None and self.session is not None:
            kept = self.session.truncate_last_reply((offset + audio_end_ms) / 1000.0)
            heard_text = kept.plain_text if kept is not None and audio_end_ms > 0 else ""
        item["content"] = [{"type": "output_audio", "transcript": heard_text}]
        await self.send(server_event("conversation.item.truncated", item_id=item_id, content_index=content_index,
                                     audio_end_ms=audio_end_ms))
