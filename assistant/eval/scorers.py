"""Scorers the field uses: jiwer for WER/CER, sacrebleu for BLEU, StepEval's tool-call counts, accuracy.

Per item a scorer returns the parts that add up over a set (error counts,
tool-call outcomes, a correct flag), so a corpus figure is computed from the
parts (errors / reference words over the whole set, as the published tables
do), never as a mean of per-utterance rates.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import jiwer  # imported with the module: a first import inside the event loop would block it
import sacrebleu

from stepvoice.assistant.eval.normalise import normalise, uses_cer

# ---- WER / CER -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCounts:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference: int = 0  # reference words (WER) or characters (CER)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.reference + other.reference)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def error_counts(reference: str, hypothesis: str, language: str) -> ErrorCounts:
    """Edit operations between the normalised texts: on characters for zh/yue/ja (CER), else on words (WER)."""
    ref, hyp = normalise(reference, language), normalise(hypothesis, language)
    if uses_cer(language):
        ref_units, hyp_units = list(ref), list(hyp)
    else:
        ref_units, hyp_units = ref.split(), hyp.split()
    if not ref_units:  # jiwer needs a reference: everything said is an insertion
        return ErrorCounts(insertions=len(hyp_units))
    if not hyp_units:
        return ErrorCounts(deletions=len(ref_units), reference=len(ref_units))
    # jiwer aligns words separated by spaces; characters are fed as one-character words.
    out = jiwer.process_words(" ".join(ref_units), " ".join(hyp_units))
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(ref_units))


def error_rate(counts: Iterable[ErrorCounts]) -> float:
    """Corpus error rate in percent: all errors over all reference units."""
    total = sum(counts, ErrorCounts())
    return 100.0 * total.errors / total.reference if total.reference else 0.0


# ---- BLEU ------------------------------------------------------------------------------------


def bleu_tokenizer(target_language: str) -> str:
    """sacrebleu's tokenizer for a target language: `zh` for Chinese (the one CoVoST 2 zh results use),
    `char` for Japanese (no MeCab needed), `13a` (sacrebleu's default, WMT's) otherwise."""
    lang = (target_language or "en").lower().split("-")[0]
    return {"zh": "zh", "yue": "zh", "ja": "char"}.get(lang, "13a")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], target_language: str) -> tuple[float, str]:
    """Corpus BLEU (0-100) and sacrebleu's signature (says tokenizer, smoothing, version)."""
    metric = sacrebleu.BLEU(tokenize=bleu_tokenizer(target_language))
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())


def sentence_bleu(hypothesis: str, reference: str, target_language: str) -> float:
    metric = sacrebleu.BLEU(tokenize=bleu_tokenizer(target_language), effective_order=True)
    return float(metric.sentence_score(hypothesis, [reference]).score)


# ---- tool calls (StepEval-Audio-Toolcall) ----------------------------------------------------------

# The four StepEval tool families (file-name prefixes) and the call names that count as that tool.
# stepvoice offers web search as `search` (its trained name); the dataset's own files say web_search.
TOOL_FAMILIES: dict[str, tuple[str, ...]] = {
    "get_date_time": ("get_date_time",),
    "get_weather": ("get_weather",),
    "timbre": ("timbre_rag",),
    "web_search": ("search", "web_search"),
}
FAMILY_TITLES = {"timbre": "Audio search", "get_date_time": "Date & Time", "get_weather": "Weather",
                 "web_search": "Web search"}


def family_names(family: str) -> tuple[str, ...]:
    return TOOL_FAMILIES.get(family, (family,))


def _norm_value(v: Any) -> str:
    s = unicodedata.normalize("NFKC", str(v)).lower()
    return "".join(c for c in s if not c.isspace() and unicodedata.category(c)[0] not in "PS")


def arguments_match(expected: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    """Every expected parameter present with the same value after normalisation (case, width,
    punctuation and spaces ignored); extra parameters are not penalised."""
    return all(k in got and _norm_value(got[k]) == _norm_value(v) for k, v in expected.items())


@dataclass(frozen=True)
class ToolcallOutcome:
    """What one StepEval item shows. Positive items must call the family's tool; negative must not."""

    family: str
    positive: bool
    triggered: bool  # the model called some tool
    target_called: bool  # ... the family's tool
    type_ok: bool | None  # positive and triggered: the right tool? (None otherwise)
    params_ok: bool | None  # right tool with parameters to check: right parameters? (None: N/A)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_toolcall(calls: Sequence[Mapping[str, Any]], family: str, positive: bool,
                   expected: Mapping[str, Any] | None) -> ToolcallOutcome:
    """One item: `calls` are the model's (name, arguments); `expected` the gold call of a positive item."""
    names = family_names(family)
    triggered = bool(calls)
    target = [c for c in calls if c.get("name") in names]
    type_ok = params_ok = None
    if positive and triggered:
        type_ok = bool(target)
        expected_args = dict((expected or {}).get("arguments") or {})
        if type_ok and expected_args:
            params_ok = arguments_match(expected_args, target[0].get("arguments") or {})
    return ToolcallOutcome(family, positive, triggered, bool(target), type_ok, params_ok)


def _pct(num: int, den: int) -> float | None:
    return round(100.0 * num / den, 4) if den else None


def toolcall_metrics(outcomes: Iterable[ToolcallOutcome]) -> dict[str, Any]:
    """StepEval's figures, in percent (None where undefined):

    - trigger precision = TP / (TP + FP), trigger recall = TP / (TP + FN), where TP is a positive item
      with a call, FN a positive item without one, FP a negative item that calls the family's tool
      (a negative item may rightly call another tool);
    - type accuracy = triggered positive items calling the family's tool / triggered positive items;
    - parameter accuracy = right-tool calls with the expected parameters / right-tool calls that have
      parameters to check (N/A for get_date_time). StepEval judges parameters with an LLM; this is
      exact match after normalisation, so it can only be stricter.
    """
    outs = list(outcomes)
    tp = sum(o.positive and o.triggered for o in outs)
    fn = sum(o.positive and not o.triggered for o in outs)
    fp = sum((not o.positive) and o.target_called for o in outs)
    typed = [o.type_ok for o in outs if o.type_ok is not None]
    params = [o.params_ok for o in outs if o.params_ok is not None]
    return {
        "trigger_precision": _pct(tp, tp + fp),
        "trigger_recall": _pct(tp, tp + fn),
        "type_accuracy": _pct(sum(typed), len(typed)),
        "parameter_accuracy": _pct(sum(params), len(params)),
        "tp": tp, "fp": fp, "fn": fn,
        "positives": sum(o.positive for o in outs), "negatives": sum(not o.positive for o in outs),
    }


# ---- multiple choice / labels ----------------------------------------------------------------------

_LETTER = re.compile(r"^\s*\(?([A-Ja-j])[\).:：、]\s*|^\s*([A-Ja-j])\s*$")
_RESPONSE = re.compile(r"<RESPONSE>(.*?)</RESPONSE>", re.S | re.I)


def pick_choice(answer: str, choices: Sequence[str]) -> int | None:
    """Which of `choices` the answer picks: a <RESPONSE> block if present, a leading letter ("B", "(b)",
    "B."), else the one choice whose text it contains (the longest if several are nested, None if
    two unrelated choices appear, as MMAU's own matcher refuses ambiguous answers)."""
    text = answer.strip()
    m = _RESPONSE.search(text)
    if m:
        text = m.group(1).strip()
    norm = _norm_value(text)
    exact = [i for i, c in enumerate(choices) if _norm_value(c) == norm]
    if exact:
        return exact[0]
    m = _LETTER.match(text)
    if m:
        idx = ord((m.group(1) or m.group(2)).upper()) - ord("A")
        if idx < len(choices):
            return idx
    found = [i for i, c in enumerate(choices) if _norm_value(c) and _norm_value(c) in norm]
    if not found:
        return None
    # Drop choices contained in another found choice ("music" inside "rock music").
    keep = [i for i in found if not any(j != i and _norm_value(choices[i]) in _norm_value(choices[j])
                                        for j in found)]
    return keep[0] if len(keep) == 1 else None


def choice_correct(answer: str, choices: Sequence[str], reference: str) -> bool:
    """Multiple choice: the picked choice is the reference answer."""
    picked = pick_choice(answer, choices)
    return picked is not None and _norm_value(choices[picked]) == _norm_value(reference)


def label_correct(answer: str, reference: str, choices: Sequence[str] = ()) -> bool:
    """A labelled item: by choice when choices are given, else the reference label appears in the answer."""
    if choices:
        return choice_correct(answer, choices, reference)
    ref = _norm_value(reference)
    return bool(ref) and ref in _norm_value(answer)


def accuracy(flags: Iterable[bool]) -> float:
    items = list(flags)
    return 100.0 * sum(items) / len(items) if items else 0.0
