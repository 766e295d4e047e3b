"""`stepvoice eval`: reproduce the published tables on your own hardware, with the standard scorers.

    stepvoice eval asr|s2tt|toolcall|paralinguistic|mmau DATA --model SPEC [--limit N] [--out DIR]
                   [--language xx] [--concurrency N]
    stepvoice eval compare DIR... [--plot summary.png]

Writes OUT/results.jsonl (one line per item) and OUT/summary.json, prints the
metrics beside the published figures; rerun the same command to continue an
interrupted run.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any

EVAL_TASKS = ("asr", "s2tt", "toolcall", "paralinguistic", "mmau")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("eval", help="score the model on ASR, S2TT, tool-call, paralinguistic and MMAU sets")
    sub = p.add_subparsers(dest="eval_command", metavar="TASK")
    for task in EVAL_TASKS:
        t = sub.add_parser(task, parents=[common], help=f"evaluate {task} on a local copy of its dataset")
        t.add_argument("data", metavar="DATA", help="the dataset folder (or its transcript/TSV/json file)")
        t.add_argument("--model", help="checkpoint folder, hub id, vllm+http://HOST:PORT or scripted:FILE.yaml")
        t.add_argument("--limit", type=int, help="only the first N items (in the dataset's sorted order)")
        t.add_argument("--out", help="results folder (default ./eval/TASK-DATASET-MODEL); rerun to resume")
        t.add_argument("--language", help="reference language (asr) or target language (s2tt) when the "
                                          "folder name does not tell (en, zh, yue, ja, ...)")
        t.add_argument("--concurrency", type=int, default=1, help="items in flight at once (vLLM backend)")
        t.add_argument("--max-new-tokens", type=int, help="cap on generated tokens per item")
        t.add_argument("--quantize", choices=["none", "int8", "int4"], help="weight-only quantization of the LLM")
        t.set_defaults(handler=run_eval_command, eval_task=task)
    c = sub.add_parser("compare", parents=[common], help="compare the summaries of several runs; plot them")
    c.add_argument("dirs", nargs="+", metavar="DIR", help="result folders of `stepvoice eval`")
    c.add_argument("--plot", default="summary.png", help="plot file (default summary.png; '' for none)")
    c.set_defaults(handler=compare_command)
    p.set_defaults(handler=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def need(*modules: str) -> None:
    """One line naming the missing scorer packages (they come with the `eval` extra)."""
    import importlib.util

    from stepvoice.engine.errors import StepvoiceError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise StepvoiceError(f"stepvoice eval needs {', '.join(missing)}: pip install 'stepvoice[eval]'")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[-40:] or "model"


class RecordingBackend:
    """The backend as is, noting the options of its first request (the effective sampling for the summary)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.first_options: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, messages: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        if self.first_options is None:
            self.first_options = options
        return self.inner.generate(messages, options, *args, **kwargs)  # cancel, prefix=... as the session passes


def warm_up(backend: Any) -> None:
    """The local engine's first request pays one-off costs inline on the event loop (imports, torch's
    STFT set-up, the tokenizer's special-token tables): pay them here, before the loop runs, so they
    neither stall it nor count in the first item's latency."""
    import stepvoice.engine.stream_decode  # noqa: F401 - imported by the engine on its first request

    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:  # scripted, vLLM: nothing to prepare
        return
    import numpy as np

    from stepvoice.engine.messages import Audio, Message
    from stepvoice.engine.prompt import build_prompt

    try:
        build_prompt([Message.text("system", "."), Message("human", [Audio(np.zeros(16000, np.float32))])], tokenizer)
    except Exception:  # noqa: BLE001 - only a warm-up; the real request reports its own problems
        pass


def quantization(backend: Any, cfg: Any, model: str) -> str | None:
    """The LLM's weight quantization in this run: --quantize on the local engine (load_backend applies it
    or refuses), else a folder written by `stepvoice model quantize`; None for float weights or unknown
    (a vLLM server does not say)."""
    from pathlib import Path

    requested = getattr(cfg, "quantize", "none") or "none"
    if getattr(backend, "name", "") == "local":
        if requested != "none":
            return requested
        try:
            from stepvoice.engine.quantize import folder_quantization

            block = folder_quantization(Path(model).expanduser()) if Path(model).expanduser().is_dir() else None
        except Exception:  # noqa: BLE001 - a label for the summary, never a reason to fail the run
            block = None
        return block.get("scheme") if block else None
    return None


def _options_dict(options: Any) -> dict[str, Any] | None:
    import dataclasses

    if options is None:
        return None
    if dataclasses.is_dataclass(options):
        return dataclasses.asdict(options)
    dump = getattr(options, "model_dump", None)
    return dump() if dump else dict(vars(options))


def run_eval_command(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    need("jiwer", "sacrebleu")

    from stepvoice.assistant.assembly import load_parts
    from stepvoice.assistant.cli.config import common_overrides
    from stepvoice.assistant.config import load_config
    from stepvoice.assistant.eval.progress import Progress
    from stepvoice.assistant.eval.report import build_summary, format_table, write_summary
    from stepvoice.assistant.eval.runner import EvalRun, check_resume, run_eval
    from stepvoice.assistant.eval.tasks import TASKS
    from stepvoice.engine.backends import DEFAULT_MODEL
    from stepvoice.engine.errors import StepvoiceError

    task = TASKS[args.eval_task]
    data = Path(args.data).expanduser()
    if not data.exists():
        raise StepvoiceError(f"dataset not found: {data}")
    if args.limit is not None and args.limit < 1:
        raise StepvoiceError("--limit must be at least 1")
    if args.concurrency < 1:
        raise StepvoiceError("--concurrency must be at least 1")
    dataset = task.load(data, args.language)  # read (and refuse a bad layout) before loading any model
    if not dataset.items:
        raise StepvoiceError(f"{data}: no items found")
    # Evaluation sees only the data: no retrieval; tool calls are recorded, never run.
    overrides = {**common_overrides(args), "model": args.model, "quantize": args.quantize,
                 "rag.mode": "off", "tool_loop.max_rounds": 0}
    cfg = load_config(args.config_file, overrides)
    model = cfg.model or DEFAULT_MODEL
    out = Path(args.out) if args.out else Path("eval") / f"{args.eval_task}-{dataset.key}-{_slug(model)}"
    generation = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    engine = {k: v for k, v in (("quantize", getattr(cfg, "quantize", "none")), ("dtype", cfg.dtype)) if v not in (None, "none")}
    run = EvalRun(args.eval_task, dataset, str(data), model, out, args.limit, args.concurrency, generation, engine)
    finished = check_resume(run)  # fails fast (before any model loads) if OUT holds another run
    backend = RecordingBackend(load_parts(cfg, tools=False).backend)
    warm_up(backend.inner)
    if run.concurrency > 1 and getattr(backend, "name", "") != "vllm":
        print(f"note: --concurrency {run.concurrency} needs the vLLM backend; running one item at a time",
              file=sys.stderr)
        run.concurrency = 1
    total = len(run.items)
    done_now = sum(1 for i in run.items if i.id in finished)
    if done_now:
        print(f"resuming {out}: {done_now} of {total} items already done", file=sys.stderr)
    bar = Progress(total, done_now, label=f"{args.eval_task} {dataset.name}")
    try:
        result = asyncio.run(run_eval(run, backend, cfg, on_item=lambda row: bar.update()))
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: {bar.done} of {total} done in {out}; run the same command again to continue",
              file=sys.stderr)
        return 130
    bar.close()
    meta = {
        "model": model,
        "backend": getattr(backend, "name", type(backend.inner).__name__),
        "device": str(getattr(backend.inner, "device", cfg.device or "")) or None,
        "dtype": str(getattr(backend.inner, "dtype", None) or getattr(getattr(backend.inner, "model", None), "dtype", None)
                     or cfg.dtype or "") or None,
        "quantize": quantization(backend.inner, cfg, model),
        "preset": task.preset,
        "options": _options_dict(backend.first_options),
        "concurrency": run.concurrency,
        "limit": args.limit,
        "data": str(data),
    }
    summary = build_summary(args.eval_task, dataset, task.main_metric(dataset), result, meta)
    write_summary(out, summary)
    print(format_table(summary))
    print(f"results: {out / 'results.jsonl'}  summary: {out / 'summary.json'}")
    if result["n"] and result["errors"] == result["n"]:
        from stepvoice.assistant.eval.runner import RESULTS, read_results

        first = next((r["error"] for r in read_results(out / RESULTS).values() if r.get("error")), "")
        raise StepvoiceError(f"every item failed ({first}); rerun the same command to retry them")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stepvoice.assistant.eval.report import compare

    plot = Path(args.plot) if args.plot else None
    if plot is not None:
        need("matplotlib")
    print(compare([Path(d) for d in args.dirs], plot))
    return 0
