"""Run a dataset through a Session, item by item, into OUT/results.jsonl; resumable.

Every item goes through the product's own path: audio read by
`engine.audio.load_audio`, a fresh `Session` with the task's preset (prompt and
sampling), `respond(..., reply="text")`. Tool calls are recorded, never run
(`tool_loop.max_rounds = 0` answers them "limit reached" without a second round),
and retrieval is off, so nothing outside the data reaches the model.

Each finished item is appended to results.jsonl at once; a rerun with the same
OUT skips the items already there (an item that failed is tried again), so an
interrupted run continues where it stopped and ends with the summary an
uninterrupted run gives.
"""
from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

# Imported here, not inside the coroutines: a first import inside the event loop blocks it for ~0.4 s.
from stepvoice.assistant.eval.items import Dataset, Item
from stepvoice.assistant.eval.tasks import TASKS, score_item, summarise, user_text
from stepvoice.assistant.session import Session
from stepvoice.assistant.turn_result import TurnResult
from stepvoice.engine.audio import load_audio
from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.messages import Audio, Message, Text
from stepvoice.tools.builtins import BUILTINS
from stepvoice.tools.registry import ToolRegistry

RESULTS = "results.jsonl"
RUN = "run.json"
SUMMARY = "summary.json"
RUN_KEYS = ("task", "dataset", "data", "model", "engine")  # a resume must match these


@dataclass
class EvalRun:
    task: str
    dataset: Dataset
    data: str  # the DATA argument, as given
    model: str
    out: Path
    limit: int | None = None
    concurrency: int = 1
    generation: Mapping[str, Any] = field(default_factory=dict)  # sampling flags beyond the preset
    engine: Mapping[str, Any] = field(default_factory=dict)  # what changes the answers: quantization, dtype

    @property
    def items(self) -> tuple[Item, ...]:
        return self.dataset.items[: self.limit] if self.limit else self.dataset.items

    def identity(self) -> dict[str, Any]:
        return {"task": self.task, "dataset": self.dataset.key, "data": self.data, "model": self.model,
                "engine": {**self.engine, **self.generation}}


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """Rows by item id (the last row of an id wins); a torn last line (killed mid-write) is ignored."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows[str(row["id"])] = row
    return rows


def check_resume(run: EvalRun) -> dict[str, dict[str, Any]]:
    """The finished rows of an earlier run in OUT, after checking it was the same task, data and model."""
    run.out.mkdir(parents=True, exist_ok=True)
    meta_path = run.out / RUN
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            meta = {}
        mine = run.identity()
        differ = [k for k in RUN_KEYS if meta.get(k) != mine[k]]
        if differ:
            k = differ[0]
            raise StepvoiceError(f"{run.out} holds another run ({k} {meta.get(k)!r}, not {mine[k]!r}); "
                                 "choose another --out or delete it")
    else:
        meta_path.write_text(json.dumps(run.identity(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    rows = read_results(run.out / RESULTS)
    return {k: v for k, v in rows.items() if not v.get("error")}


async def _audio(path: str, transcript: str | None = None) -> Any:
    return Audio(await asyncio.to_thread(load_audio, path), transcript or None)


async def _message(role: str, audio: Sequence[str], text: str) -> Any:
    parts: list[Any] = [await _audio(a) for a in audio]
    if text:
        parts.append(Text(text))
    return Message(role, parts)


async def _earlier_turn(turn: Any) -> Any:
    """A turn of a multi-turn item: a spoken user turn is its audio (its text, if any, kept as the
    transcript, as the model heard only the audio); anything else is text."""
    if turn.audio:
        return Message(turn.role, [await _audio(turn.audio, turn.text)])
    return Message.text(turn.role, turn.text)


@functools.lru_cache(maxsize=1)
def toolcall_schemas() -> tuple[dict[str, Any], ...]:
    """The four tools Step-Audio 2 was trained on, declared exactly as the product declares them."""
    registry = ToolRegistry()
    for t in BUILTINS:
        registry.add(t)
    return tuple(registry.schemas())


def make_session(run: EvalRun, backend: Any, config: Any) -> Any:
    preset = TASKS[run.task].preset
    target = run.dataset.language if run.task == "s2tt" else None
    client_tools = toolcall_schemas() if run.task == "toolcall" else ()
    return Session(backend, config=config, tools=None, client_tools=client_tools, task=preset,
                   target_lang=target, generation=dict(run.generation))


async def run_item(run: EvalRun, backend: Any, config: Any, item: Item) -> dict[str, Any]:
    """One item through a fresh session: its row for results.jsonl (an error is recorded, not raised)."""
    start = time.perf_counter()
    row: dict[str, Any] = {"id": item.id, "group": item.group, "reference": item.reference}
    try:
        session = make_session(run, backend, config)
        if item.history:
            session.history = [await _earlier_turn(t) for t in item.history]
        message = await _message("human", item.audio, user_text(run.task, item))
        result = TurnResult()
        async for event in session.respond(message, reply="text"):
            result.add(event, start)
        end = result.end
        calls = [{"name": c.name, "arguments": c.arguments} for c in result.calls]
        row.update(hypothesis=result.text.strip(), tool_calls=calls)
        if end is not None and end.reason in ("error", "script_exhausted"):
            row["error"] = f"generation failed: {end.error or end.reason}"
        usage = end.usage if end is not None else None
        row["completion_tokens"] = usage.completion_tokens if usage else 0
        row["generation_s"] = round(usage.elapsed_s, 4) if usage else 0.0
        row["score"] = await asyncio.to_thread(score_item, run.task, run.dataset, item, row["hypothesis"], calls)
    except Exception as e:  # noqa: BLE001 - bad audio, bad item: one line in the row; the run goes on
        msg = str(e).splitlines()[0] if str(e) else ""
        if not isinstance(e, StepvoiceError):
            msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
        row.update(hypothesis="", tool_calls=[], error=msg, completion_tokens=0, generation_s=0.0)
        row["score"] = score_item(run.task, run.dataset, item, "", [])
    row["latency_s"] = round(time.perf_counter() - start, 4)
    return row


async def run_eval(run: EvalRun, backend: Any, config: Any,
                   on_item: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the items not yet in OUT/results.jsonl; return the metrics of all of them (see `finish`)."""
    done = await asyncio.to_thread(check_resume, run)  # a long results.jsonl takes a while to parse
    todo = [i for i in run.items if i.id not in done]
    sem = asyncio.Semaphore(max(1, run.concurrency))
    results = (run.out / RESULTS).open("a", encoding="utf-8")
    start = time.perf_counter()

    async def one(item: Item) -> None:
        async with sem:
            row = await run_item(run, backend, config, item)
        results.write(json.dumps(row, ensure_ascii=False) + "\n")
        results.flush()
        done[item.id] = row
        if on_item is not None:
            on_item(row)

    try:
        if run.concurrency <= 1:
            for item in todo:  # strictly in order: the scripted engine's replies are consumed in order
                await one(item)
        else:
            await asyncio.gather(*(one(i) for i in todo))
    finally:
        results.close()
    return await asyncio.to_thread(finish, run, done, time.perf_counter() - start)  # corpus BLEU of a big set


def finish(run: EvalRun, done: Mapping[str, Mapping[str, Any]], wall_s: float) -> dict[str, Any]:
    """Metrics over the items in dataset order (so a resumed run sums exactly like an uninterrupted one)."""
    items = [i for i in run.items if i.id in done]
    rows = [done[i.id] for i in items]
    metrics = summarise(run.task, run.dataset, items, rows)
    tokens = sum(int(r.get("completion_tokens") or 0) for r in rows)
    gen_s = sum(float(r.get("generation_s") or 0.0) for r in rows)
    return {
        "metrics": metrics,
        "n": len(rows),
        "total": len(run.items),
        "errors": sum(1 for r in rows if r.get("error")),
        "wall_s": round(wall_s, 3),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / gen_s, 3) if gen_s > 0 else None,
        "mean_latency_s": round(sum(float(r.get("latency_s") or 0) for r in rows) / len(rows), 4) if rows else None,
    }
