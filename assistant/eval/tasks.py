"""The five eval tasks: which loader, which session preset, what the user turn says, how to score.

Prompts come from the session task presets (stepvoice.assistant.presets), so a
fix to a preset's prompt or sampling reaches the eval unchanged:
asr -> "asr", s2tt -> "translate" (target from the data), paralinguistic ->
"paralinguistic", toolcall -> "chat" with the four trained tools declared,
mmau -> "chat" without tools (the question and its options follow the audio).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from stepvoice.assistant.eval import scorers
from stepvoice.assistant.eval.items import Dataset, Item

MMAU_INSTRUCTION = "Please choose the answer from the following options: [{options}]."


@dataclass(frozen=True)
class EvalTask:
    name: str
    preset: str  # the session task preset
    load: Callable[[Path, str | None], Dataset]
    main_metric: Callable[[Dataset], str]


def _load_asr(path: Path, language: str | None) -> Dataset:
    from stepvoice.assistant.eval.loaders_asr import load_asr

    return load_asr(path, language)


def _load_covost(path: Path, language: str | None) -> Dataset:
    from stepvoice.assistant.eval.loaders_bench import load_covost

    return load_covost(path, language)


def _load_toolcall(path: Path, language: str | None) -> Dataset:
    from stepvoice.assistant.eval.loaders_bench import load_toolcall

    return load_toolcall(path)


def _load_para(path: Path, language: str | None) -> Dataset:
    from stepvoice.assistant.eval.loaders_bench import load_paralinguistic

    return load_paralinguistic(path)


def _load_mmau(path: Path, language: str | None) -> Dataset:
    from stepvoice.assistant.eval.loaders_bench import load_mmau

    return load_mmau(path)


TASKS: dict[str, EvalTask] = {
    "asr": EvalTask("asr", "asr", _load_asr, lambda d: "cer" if scorers.uses_cer(d.language) else "wer"),
    "s2tt": EvalTask("s2tt", "translate", _load_covost, lambda d: "bleu"),
    "toolcall": EvalTask("toolcall", "chat", _load_toolcall, lambda d: "trigger_recall"),
    "paralinguistic": EvalTask("paralinguistic", "paralinguistic", _load_para, lambda d: "accuracy"),
    "mmau": EvalTask("mmau", "chat", _load_mmau, lambda d: "accuracy"),
}


def user_text(task: str, item: Item) -> str:
    """Text that follows the audio in the user turn (empty for asr/s2tt: the preset's system prompt says it all)."""
    if task == "mmau" and item.choices:
        return f"{item.question} {MMAU_INSTRUCTION.format(options=', '.join(item.choices))}".strip()
    return item.question


def score_item(task: str, dataset: Dataset, item: Item, hypothesis: str,
               calls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The item's score parts (added up by `summarise`)."""
    if task == "asr":
        return scorers.error_counts(item.reference, hypothesis, dataset.language).as_dict()
    if task == "s2tt":
        return {"bleu": round(scorers.sentence_bleu(hypothesis, item.reference, dataset.language), 4)}
    if task == "toolcall":
        return scorers.score_toolcall(calls, item.extra["family"], item.extra["positive"], item.reference).as_dict()
    if task == "mmau":
        picked = scorers.pick_choice(hypothesis, item.choices)
        return {"correct": scorers.choice_correct(hypothesis, item.choices, item.reference),
                "picked": item.choices[picked] if picked is not None else None}
    return {"correct": scorers.label_correct(hypothesis, item.reference, item.choices)}


def summarise(task: str, dataset: Dataset, items: Sequence[Item], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Corpus metrics from the rows of `items` (in dataset order): {name: value}, groups as name/group."""
    metrics: dict[str, Any] = {}
    groups = sorted({i.group for i in items if i.group})
    by_group = lambda g: [r for i, r in zip(items, rows) if i.group == g]  # noqa: E731
    if task == "asr":
        name = "cer" if scorers.uses_cer(dataset.language) else "wer"
        counts = [scorers.ErrorCounts(**r["score"]) for r in rows]
        total = sum(counts, scorers.ErrorCounts())
        metrics[name] = round(scorers.error_rate(counts), 4)
        metrics.update({k: v for k, v in total.as_dict().items()})
        if len(groups) > 1:
            for g in groups:
                metrics[f"{name}/{g}"] = round(scorers.error_rate(scorers.ErrorCounts(**r["score"]) for r in by_group(g)), 4)
    elif task == "s2tt":
        score, signature = scorers.corpus_bleu([r["hypothesis"] for r in rows], [r["reference"] for r in rows],
                                               dataset.language)
        metrics["bleu"] = round(score, 4)
        metrics["bleu_signature"] = signature
    elif task == "toolcall":
        outcomes = [scorers.ToolcallOutcome(**r["score"]) for r in rows]
        overall = scorers.toolcall_metrics(outcomes)
        metrics.update(overall)
        for g in groups:
            part = scorers.toolcall_metrics(o for o in outcomes if o.family == g)
            for k in ("trigger_precision", "trigger_recall", "type_accuracy", "parameter_accuracy"):
                metrics[f"{k}/{g}"] = part[k]
    else:
        metrics["accuracy"] = round(scorers.accuracy(r["score"]["correct"] for r in rows), 4)
        for g in groups:
            metrics[f"accuracy/{g}"] = round(scorers.accuracy(r["score"]["correct"] for r in by_group(g)), 4)
    return metrics
