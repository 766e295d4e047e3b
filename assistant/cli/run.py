"""`stepvoice run TASKS.yaml [--out DIR]`: scripted conversations with expectations (see assistant.tasks)."""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("run", parents=[common], help="run scripted tasks from a YAML file and check expectations")
    p.add_argument("tasks_file", metavar="TASKS.yaml")
    p.add_argument("--out", help="output folder (default: DATA/runs/<file name>-<time>)")
    p.add_argument("--model", help="model spec (beats the tasks file's `model` and the config)")
    p.add_argument("--tools-module", action="append", default=[], metavar="PATH",
                   help="a Python file or module with extra @tool functions (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    from stepvoice.assistant.cli.config import add_engine_flags

    add_engine_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import sys
    import time
    from pathlib import Path

    from tqdm import tqdm

    from stepvoice.assistant.assembly import load_parts
    from stepvoice.assistant.cli.config import common_overrides
    from stepvoice.assistant.config import load_config
    from stepvoice.assistant.paths import data_dir
    from stepvoice.assistant.task_runner import TaskRunner, slug
    from stepvoice.assistant.tasks import load_tasks

    taskfile = load_tasks(args.tasks_file)  # a malformed file fails here, before any model loads
    cfg = load_config(args.config_file, {**common_overrides(args), "model": args.model or taskfile.model})
    speech = any(t.reply == "speech" for t in taskfile.tasks)
    parts = load_parts(cfg, tools=any(t.tools is not False for t in taskfile.tasks),
                       tools_modules=args.tools_module, speech=speech, voices=any(t.voice for t in taskfile.tasks))
    for note in parts.notes if speech else []:
        print(f"note: {note}", file=sys.stderr)
    out = Path(args.out) if args.out else (
        data_dir(cfg.data_dir) / "runs" / f"{slug(Path(args.tasks_file).stem)}-{time.strftime('%Y%m%d-%H%M%S')}")
    total = sum(len(t.turns) for t in taskfile.tasks)
    with tqdm(total=total, unit="turn", disable=args.no_progress or not sys.stderr.isatty(), file=sys.stderr) as bar:
        runner = TaskRunner(parts, cfg, out, on_turn=lambda: bar.update(1))
        report = asyncio.run(runner.run(taskfile))
    for line in report.summary_lines():
        print(line)
    return 1 if report.failed else 0
