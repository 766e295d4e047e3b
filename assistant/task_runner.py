"""Run scripted tasks: one fresh Session per task, every event to a JSONL transcript, a wav per spoken turn.

Output folder:
    transcript.jsonl   one line per event: {"task", "turn", "t" (s since the turn began), "event", ...},
                       plus "turn_start", "options" (the generation options that ran, after each turn)
                       and "task_end" lines (the expectations and whether they held)
    <task>-<turn>.wav  the spoken answer of each turn that had speech audio
    summary.json       per task: passed, failures, timings, context compaction achieved
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.session import Session
from stepvoice.assistant.tasks import Expectation, Task, TaskFile, Turn
from stepvoice.assistant.turn_result import TurnResult, event_record
from stepvoice.engine.messages import Audio, Message, Text
from stepvoice.engine.options import effective_report


@dataclass
class TaskReport:
    name: str
    failures: list[str] = field(default_factory=list)
    turns: int = 0
    wavs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    compaction: str | None = None  # the session's last compaction summary, when it had to compact
    compaction_ratio: float = 1.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None


@dataclass
class RunReport:
    tasks: list[TaskReport] = field(default_factory=list)
    out_dir: Path | None = None

    @property
    def failed(self) -> list[TaskReport]:
        return [t for t in self.tasks if not t.passed]

    def summary_lines(self) -> list[str]:
        lines = []
        for t in self.tasks:
            mark = "PASS" if t.passed else "FAIL"
            extra = f" ({t.compaction})" if t.compaction else ""
            lines.append(f"{mark} {t.name}: {t.turns} turn(s), {t.seconds:.2f} s{extra}")
            if t.error:
                lines.append(f"     error: {t.error}")
            lines.extend(f"     expected {f}" for f in t.failures)
        ok = len(self.tasks) - len(self.failed)
        ratios = [t.compaction_ratio for t in self.tasks if t.compaction]
        tail = f"; best context compression {max(ratios):.1f}:1" if ratios else ""
        lines.append(f"{ok}/{len(self.tasks)} task(s) passed{tail}" + (f"; output in {self.out_dir}" if self.out_dir else ""))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"passed": not self.failed, "tasks": [
            {"name": t.name, "passed": t.passed, "failures": t.failures, "error": t.error, "turns": t.turns,
             "wavs": t.wavs, "seconds": round(t.seconds, 4), "compaction": t.compaction,
             "compaction_ratio": round(t.compaction_ratio, 3)} for t in self.tasks]}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "task"


def tool_subset(registry: Any, names: tuple[str, ...]) -> Any:
    """A registry with only the named tools (unknown names are an error: the task file is wrong)."""
    from stepvoice.engine.errors import ConfigError
    from stepvoice.tools import ToolRegistry

    missing = [n for n in names if registry is None or n not in registry]
    if missing:
        known = ", ".join(registry.names()) if registry is not None else "none"
        raise ConfigError(f"unknown tool(s) {', '.join(missing)} (available: {known})")
    sub = ToolRegistry()
    for t in registry.tools():
        if t.name in names:
            sub.add(t, source=t.source)
    return sub


def matches(expected: Any, actual: Any) -> bool:
    """Subset match: mappings by their given keys, strings case-insensitively, numbers by value."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(matches, expected, actual))
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, str):
        return isinstance(actual, str) and expected.strip().lower() == actual.strip().lower()
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) and float(expected) == float(actual)
    return expected == actual


def check(expectations: tuple[Expectation, ...], results: list[TurnResult]) -> list[str]:
    """The expectations that did not hold, described."""
    text = "".join(r.text for r in results).lower()
    calls = [c for r in results for c in r.calls]
    failed = []
    for e in expectations:
        if e.tool is not None:
            ok = any(c.name == e.tool and matches(e.arguments, c.arguments) for c in calls)
            if not ok:
                seen = ", ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in calls) or "no calls"
                failed.append(f"{e.describe()} [{e.where}]; got {seen}")
        elif e.contains is not None and e.contains.lower() not in text:
            failed.append(f"{e.describe()} [{e.where}]; the answer was {_short(text)!r}")
        elif e.not_contains is not None and e.not_contains.lower() in text:
            failed.append(f"{e.describe()} [{e.where}]")
    return failed


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class TaskRunner:
    """Runs a TaskFile against one backend; `parts` come from `assistant.assembly.load_parts`."""

    def __init__(self, parts: Any, config: AssistantConfig, out_dir: Path, *,
                 on_turn: Callable[[], None] | None = None):
        self.parts = parts
        self.config = config
        self.out_dir = Path(out_dir)
        self.on_turn = on_turn or (lambda: None)

    async def run(self, taskfile: TaskFile) -> RunReport:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = RunReport(out_dir=self.out_dir)
        registry = self.parts.tools
        if registry is not None and hasattr(registry, "start"):
            await registry.start()
        try:
            with open(self.out_dir / "transcript.jsonl", "w", encoding="utf-8") as log:
                for task in taskfile.tasks:
                    report.tasks.append(await self.run_task(task, log))
        finally:
            if registry is not None and hasattr(registry, "aclose"):
                await registry.aclose()
        (self.out_dir / "summary.json").write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2),
                                                    encoding="utf-8")
        return report

    def session_for(self, task: Task) -> Session:
        from stepvoice.tools.policy import CONFIRMER, allow_list_confirmer

        # Nobody can be asked during `run`: a tool under the `confirm` policy runs only in a task
        # that names it in its own `tools` list (set for the rest of this task's turns).
        CONFIRMER.set(allow_list_confirmer(task.tools) if isinstance(task.tools, tuple) else None)
        tools = self.parts.tools
        if task.tools is False:
            tools = None
        elif isinstance(task.tools, tuple):
            tools = tool_subset(tools, task.tools)
        return Session(self.parts.backend, config=self.config, tools=tools, retriever=self.parts.retriever,
                       voice_bank=self.parts.voice_bank, token2wav=self.parts.token2wav, voice=task.voice,
                       task=task.task, target_lang=task.target_lang, style=task.style)

    async def run_task(self, task: Task, log: Any) -> TaskReport:
        from stepvoice.engine.errors import StepvoiceError

        rep = TaskReport(task.name)
        start = time.perf_counter()
        results: list[TurnResult] = []
        try:
            session = self.session_for(task)
            for i, turn in enumerate(task.turns):
                result = await self.run_turn(session, task, i, turn, log)
                results.append(result)
                rep.turns += 1
                if result.audio:
                    wav = self.out_dir / f"{slug(task.name)}-{i + 1:02d}.wav"
                    result.write_wav(wav)
                    rep.wavs.append(wav.name)
                rep.failures += [f"(turn {i + 1}) {f}" for f in check(turn.expect, [result])]
                end = result.end
                if end is not None and end.reason in ("error", "script_exhausted"):
                    rep.error = f"turn {i + 1}: generation failed: {end.error or end.reason}"
                    break
                self.on_turn()
            totals = session.compaction
            if totals.passes:
                rep.compaction, rep.compaction_ratio = totals.summary(), totals.ratio
        except StepvoiceError as e:
            rep.error = str(e)
        rep.failures += check(task.expect, results)
        rep.seconds = time.perf_counter() - start
        _write(log, {"task": task.name, "event": "task_end", "passed": rep.passed, "failures": rep.failures,
                     "error": rep.error, "wavs": rep.wavs, "seconds": round(rep.seconds, 4),
                     "compaction": rep.compaction})
        return rep

    async def run_turn(self, session: Session, task: Task, index: int, turn: Turn, log: Any) -> TurnResult:
        parts: list[Any] = []
        if turn.audio is not None:
            parts.append(Audio(self.read_audio(turn.audio)))
        if turn.text:
            parts.append(Text(turn.text))
        _write(log, {"task": task.name, "turn": index + 1, "event": "turn_start", "text": turn.text,
                     "audio": str(turn.audio) if turn.audio else None, "reply": task.reply, "voice": session.voice})
        result = TurnResult()
        begin = time.perf_counter()
        async for event in session.respond(Message("human", parts), reply=task.reply, style=turn.style):
            result.add(event, begin)
            _write(log, {"task": task.name, "turn": index + 1, **event_record(event, time.perf_counter() - begin)})
        # the sampling that ran (the task preset, the checkpoint's generation_config.json, the defaults)
        _write(log, {"task": task.name, "turn": index + 1, "event": "options",
                     "options": effective_report(self.parts.backend, session.last_options)})
        return result

    def read_audio(self, path: Path) -> Any:
        from stepvoice.engine.audio import load_audio

        return load_audio(path)


def _write(log: Any, record: dict[str, Any]) -> None:
    log.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    log.flush()
