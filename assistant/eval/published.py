"""Step-Audio 2 mini's published figures, shown next to a run's own.

Source: the Evaluation section of the official README, github.com/stepfun-ai/Step-Audio2
(read at commit 1da25db022fb38c7af2a7bfdd45230c743adab53). The tool-call table there has no
mini row: its figures are the full Step-Audio 2's, labelled so.
"""
from __future__ import annotations

from typing import Any

SOURCE = ("stepfun-ai/Step-Audio2 README, Evaluation "
          "(https://github.com/stepfun-ai/Step-Audio2/blob/1da25db022fb38c7af2a7bfdd45230c743adab53/README.md)")
MODEL = "Step-Audio 2 mini"

# dataset key -> {metric name: value} (WER/CER/BLEU/accuracy in percent or BLEU points).
PUBLISHED: dict[str, dict[str, Any]] = {
    "librispeech-test-clean": {"wer": 1.33},
    "librispeech-test-other": {"wer": 2.86},
    "librispeech": {"wer/test-clean": 1.33, "wer/test-other": 2.86},  # both splits in one run
    "commonvoice-en": {"wer": 6.76},
    "fleurs-en": {"wer": 3.05},
    "aishell": {"cer": 0.78},
    "fleurs-zh": {"cer": 2.53},
    "fleurs-ar": {"wer": 16.46},
    "commonvoice-yue": {"cer": 8.32},
    "fleurs-ja": {"cer": 4.67},
    "covost2-en-zh": {"bleu": 49.12},
    "covost2-zh-en": {"bleu": 29.47},
    "mmau": {"accuracy": 73.2, "accuracy/sound": 76.6, "accuracy/speech": 71.5, "accuracy/music": 71.6},
    "stepeval-paralinguistic": {
        "accuracy": 80.00, "accuracy/gender": 100, "accuracy/age": 94, "accuracy/timbre": 80,
        "accuracy/scenario": 78, "accuracy/event": 60, "accuracy/emotion": 82, "accuracy/pitch": 82,
        "accuracy/rhythm": 68, "accuracy/speed": 74, "accuracy/style": 86, "accuracy/vocal": 76,
    },
    # Full Step-Audio 2 (no mini row is published for tool calling).
    "stepeval-toolcall": {
        "trigger_precision/timbre": 86.8, "trigger_recall/timbre": 99.5, "type_accuracy/timbre": 100.0,
        "parameter_accuracy/timbre": 100.0,
        "trigger_precision/get_date_time": 96.9, "trigger_recall/get_date_time": 98.4,
        "type_accuracy/get_date_time": 100.0,
        "trigger_precision/get_weather": 92.2, "trigger_recall/get_weather": 100.0,
        "type_accuracy/get_weather": 90.5, "parameter_accuracy/get_weather": 100.0,
        "trigger_precision/web_search": 88.4, "trigger_recall/web_search": 95.5,
        "type_accuracy/web_search": 98.4, "parameter_accuracy/web_search": 100.0,
    },
}
PUBLISHED_MODEL = {"stepeval-toolcall": "Step-Audio 2 (full; no mini figure published)"}


def published(key: str, metric: str) -> dict[str, Any] | None:
    """The published figure for `metric` ("wer", "accuracy/sound", ...) of dataset `key`, with its source."""
    value = PUBLISHED.get(key, {}).get(metric)
    if value is None:
        return None
    return {"value": value, "model": PUBLISHED_MODEL.get(key, MODEL), "source": SOURCE}
