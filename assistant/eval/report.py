"""summary.json, the table printed at the end (beside the published figure), and `eval compare`'s plot."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from stepvoice.assistant.eval.published import published
from stepvoice.engine.errors import StepvoiceError

LOWER_IS_BETTER = ("wer", "cer")


def build_summary(task: str, dataset: Any, main_metric: str, result: Mapping[str, Any],
                  meta: Mapping[str, Any]) -> dict[str, Any]:
    """The summary object: main metric and value, every metric with its published figure, run facts."""
    metrics = dict(result["metrics"])
    rows = []
    for name, value in metrics.items():
        if isinstance(value, (int, float)) or value is None:
            pub = published(dataset.key, name)
            rows.append({"metric": name, "value": value, "published": pub["value"] if pub else None})
    pub_main = published(dataset.key, main_metric)
    pub_any = pub_main or next((published(dataset.key, r["metric"]) for r in rows if r["published"] is not None), None)
    return {
        "task": task,
        "dataset": dataset.name,
        "dataset_key": dataset.key,
        "language": dataset.language,
        "metric": main_metric,
        "value": metrics.get(main_metric),
        "published": pub_main,
        "n": result["n"],
        "total": result["total"],
        "errors": result["errors"],
        "metrics": metrics,
        "table": rows,
        "published_source": (pub_any or {}).get("source"),
        "published_model": (pub_any or {}).get("model"),
        **dict(meta),
        "wall_s": result["wall_s"],
        "completion_tokens": result["completion_tokens"],
        "tokens_per_s": result["tokens_per_s"],
        "mean_latency_s": result["mean_latency_s"],
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_summary(out: Path, summary: Mapping[str, Any]) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def format_table(summary: Mapping[str, Any]) -> str:
    """Metric | this run | published, one line each (counts and signature after)."""
    lines = [f"{summary['dataset']} ({summary['task']}), n={summary['n']}/{summary['total']}"
             + (f", {summary['errors']} failed" if summary.get("errors") else "")
             + f", model {summary.get('model')}"]
    rows = [r for r in summary["table"] if not r["metric"] in ("substitutions", "deletions", "insertions",
                                                                "reference", "tp", "fp", "fn",
                                                                "positives", "negatives")]
    width = max([len(r["metric"]) for r in rows] + [6])
    lines.append(f"  {'metric':<{width}}  {'this run':>9}  {'published':>9}")
    for r in rows:
        lines.append(f"  {r['metric']:<{width}}  {_fmt(r['value']):>9}  {_fmt(r['published']):>9}")
    if summary.get("published_source"):
        who = summary.get("published_model") or "Step-Audio 2 mini"
        lines.append(f"  published: {who}, {summary['published_source']}")
    sig = summary["metrics"].get("bleu_signature")
    if sig:
        lines.append(f"  sacrebleu: {sig}")
    return "\n".join(lines)


# ---- compare -----------------------------------------------------------------------------------

def load_summary(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json" if folder.is_dir() else folder
    if not path.is_file():
        raise StepvoiceError(f"no summary.json in {folder} (run `stepvoice eval ... --out {folder}` first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StepvoiceError(f"{path}: not JSON: {e.msg}") from None


def run_label(summary: Mapping[str, Any], folder: Path) -> str:
    return f"{folder.name} ({summary.get('backend') or '?'}{', ' + summary['quantize'] if summary.get('quantize') else ''})"


def compare(folders: Sequence[Path], plot: Path | None) -> str:
    """A table of every run's metrics side by side; with `plot`, a bar chart per dataset (matplotlib)."""
    runs = [(f, load_summary(f)) for f in folders]
    keys: list[tuple[str, str]] = []
    for _, s in runs:
        k = (s["dataset"], s["metric"])
        if k not in keys:
            keys.append(k)
    labels = [run_label(s, f) for f, s in runs]
    width = max(len(x) for x in labels + ["run"])
    lines = []
    for dataset, metric in keys:
        pub = next((s.get("published") for _, s in runs if s["dataset"] == dataset and s.get("published")), None)
        lines.append(f"{dataset} - {metric}" + (f" (published {_fmt(pub['value'])})" if pub else ""))
        for (f, s), label in zip(runs, labels):
            if s["dataset"] == dataset and s["metric"] == metric:
                lines.append(f"  {label:<{width}}  {_fmt(s['value']):>8}  n={s['n']}"
                             + (f"  {s['tokens_per_s']:.1f} tok/s" if s.get("tokens_per_s") else ""))
    if plot is not None:
        plot_runs(runs, keys, labels, plot)
        lines.append(f"plot: {plot}")
    return "\n".join(lines)


def plot_runs(runs: Sequence[tuple[Path, Mapping[str, Any]]], keys: Sequence[tuple[str, str]],
              labels: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(max(4.0, 3.2 * len(keys)), 3.6), squeeze=False)
    for ax, (dataset, metric) in zip(axes[0], keys):
        names, values = [], []
        pub = None
        for ((_, s), label) in zip(runs, labels):
            if s["dataset"] == dataset and s["metric"] == metric and s.get("value") is not None:
                names.append(label)
                values.append(float(s["value"]))
                pub = pub or s.get("published")
        bars = ax.bar(range(len(values)), values, color="#4878a8")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(values)), names, rotation=30, ha="right", fontsize=7)
        if pub:
            ax.axhline(float(pub["value"]), color="#c44e52", linestyle="--", linewidth=1, label="published")
            ax.legend(fontsize=7)
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{dataset}\n{metric} ({better} is better)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
