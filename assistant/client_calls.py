"""Calls to client-side tools (Realtime `session.tools`, `client_tools=`): the session
does not run them; it waits for `add_tool_output`; `respond(None)` then answers from history
(calls still pending stay pending: the model answers with the outputs it has)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from stepvoice.assistant.history import History
from stepvoice.assistant.tool_loop import NO_CLIENT_OUTPUT, ToolRunner, client_tool_map, result
from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.events import ToolCall, ToolResult


class ClientCalls:
    """The client tools of one session (name -> schema or None) and the calls awaiting an answer."""

    def __init__(self, client_tools: Iterable[str | Mapping[str, Any]], runner: ToolRunner, history: History):
        self.tools: dict[str, dict[str, Any] | None] = client_tool_map(client_tools)
        self.pending: dict[str, ToolCall] = {}
        self.runner = runner
        self.history = history

    def is_client(self, call: ToolCall) -> bool:
        return call.name in self.tools

    def schemas(self) -> list[dict[str, Any]]:
        return [s for s in self.tools.values() if s is not None]

    def wait_for(self, calls: Iterable[ToolCall]) -> None:
        for c in calls:
            self.pending[c.id] = c

    def add_output(self, call_id: str, output: str) -> ToolResult:
        call = self.pending.pop(call_id, None)
        if call is None:
            known = ", ".join(self.pending) or "none"
            raise StepvoiceError(f"no pending client tool call {call_id!r} (pending: {known})")
        answer = ToolResult(call.id, call.name, str(output), ok=True)
        self.history.append(self.runner.input_turn([answer], last=not self.pending))
        return answer

    def settle(self) -> None:
        """A new user turn while calls are unanswered: answer them so none stays pending."""
        if not self.pending:
            return
        calls = list(self.pending.values())
        self.pending.clear()
        self.history.append(self.runner.input_turn([result(c, NO_CLIENT_OUTPUT, False) for c in calls], last=False))


__all__ = ["ClientCalls"]
