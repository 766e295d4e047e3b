"""Running the model's tool calls for a Session: concurrently, bounded in time, every call answered.

`ToolRunner.run(calls, cancel)` yields each `ToolResult` as its call finishes;
when `cancel` fires (barge-in) or the consumer stops listening, the calls still
running are cancelled and answered as such, so history never holds a call
without a result. `input_turn` renders results as the model reads them: one
`input` turn, neutralised (no forged turns, calls or audio tokens), with the
official "summarise briefly" instruction after the last result of a round.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

from stepvoice.assistant.config import ToolLoopConfig
from stepvoice.assistant.rag import neutralize
from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.events import ToolCall, ToolResult
from stepvoice.engine.messages import Message, Text

CANCELLED = "cancelled: the user interrupted before {name} finished; it gave no result."
LIMIT = "not run: the limit of {n} tool round(s) per turn was reached. Answer with what you know."
NO_TOOLS = "error: no tools are available in this session."
NO_CLIENT_OUTPUT = "error: the client gave no output for this call."


def result(call: ToolCall, content: str, ok: bool) -> ToolResult:
    return ToolResult(call.id, call.name, content, ok=ok)


def cancelled(calls: Iterable[ToolCall]) -> list[ToolResult]:
    return [result(c, CANCELLED.format(name=c.name), False) for c in calls]


def client_tool_map(client_tools: Iterable[str | Mapping[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Client tools by name: a bare name (declared elsewhere) or a schema in either OpenAI form."""
    out: dict[str, dict[str, Any] | None] = {}
    for item in client_tools:
        if isinstance(item, str):
            out[item] = None
            continue
        name = (item.get("function") or item).get("name")
        if not name:
            raise StepvoiceError("a client tool schema needs a name")
        out[name] = openai_function(item)
    return out


def openai_function(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A tool as the model's `tool_json_schemas` expects it, from the Chat Completions form
    (`{"type": "function", "function": {...}}`) or the Realtime form (`{"type": "function", "name": ...}`)."""
    if "function" in schema:
        return dict(schema)
    fn = {k: schema[k] for k in ("name", "description", "parameters") if k in schema}
    fn.setdefault("parameters", {"type": "object", "properties": {}})
    return {"type": "function", "function": fn}


class ToolRunner:
    """The server-side tools of one session: a `tools.ToolRegistry` (or None) and its `ToolContext`."""

    def __init__(self, registry: Any, context: Any, config: ToolLoopConfig):
        self.registry = registry
        self.context = context
        self.config = config

    async def run(self, calls: Sequence[ToolCall], cancel: asyncio.Event | None) -> AsyncIterator[ToolResult]:
        """Run calls concurrently; yield each result as it finishes, then the cancelled ones (if `cancel` fired)."""
        if not calls:
            return
        tasks = {asyncio.ensure_future(self.run_one(c)): c for c in calls}
        waiter = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        pending = set(tasks)
        try:
            while pending:
                done, _ = await asyncio.wait(pending | ({waiter} if waiter else set()),
                                             return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t is not waiter:
                        pending.discard(t)
                        yield t.result()
                if waiter is not None and waiter.done():
                    break
        finally:
            for t in pending:  # cancelled (barge-in) or the consumer went away
                t.cancel()
            if waiter is not None:
                waiter.cancel()
        for r in cancelled(sorted((tasks[t] for t in pending), key=calls.index)):
            yield r

    async def run_one(self, call: ToolCall) -> ToolResult:
        if self.registry is None:
            return result(call, NO_TOOLS, False)
        from stepvoice.tools import run

        limit = self.config.timeout_s
        start = time.perf_counter()
        try:
            return await asyncio.wait_for(run(call, self.context, self.registry), limit)
        except asyncio.TimeoutError:
            # a sync tool's thread cannot be stopped: it may still be running (tools.runner says which)
            return ToolResult(call.id, call.name, f"error: {call.name} did not finish within {limit:g} s; "
                              "its result will be dropped. Tell the user it did not finish.", ok=False,
                              elapsed_s=time.perf_counter() - start)

    def input_turn(self, results: Sequence[ToolResult], *, last: bool) -> Message:
        """One `input` turn with the results (neutralised), the summary instruction after the last one.

        The results and the instruction are two parts, so the prompt tokenizes them as two
        separate pieces, as the official example sends them (examples.py lines 121-122:
        `{"type": "text", "text": search_result}, {"type": "text", "text": "\\n\\n\\n请用口语化..."}`)."""
        text = "\n\n".join(neutralize(r.content) for r in results)
        if last and self.config.summary_instruction:
            return Message("input", [Text(text), Text(self.config.summary_instruction)])
        return Message("input", [Text(text)])
