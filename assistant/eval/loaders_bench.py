"""Benchmark sets beyond ASR: CoVoST 2 (S2TT), StepEval-Audio-Toolcall, StepEval-Audio-Paralinguistic, MMAU.

Field names the publishers use are read first; common alternatives are
accepted too (each loader's docstring lists them), and a line that has none
of them is one clear error naming the file and line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from stepvoice.assistant.eval.items import Dataset, Item, Turn
from stepvoice.assistant.eval.loaders_asr import _read_tsv
from stepvoice.engine.errors import StepvoiceError

_COVOST_NAME = re.compile(r"covost_v2\.([A-Za-z]+)(?:-[A-Za-z]+)?_([A-Za-z]+)(?:-[A-Za-z]+)?")


def _first(d: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q)


# ---- CoVoST 2 --------------------------------------------------------------------------------------

def load_covost(path: Path, language: str | None = None, split: str = "test") -> Dataset:
    """CoVoST 2: covost_v2.SRC_TGT.tsv (columns path, sentence, translation[, split]; the per-split
    files covost_v2.SRC_TGT.test.tsv as well) and the Common Voice clips/ of the source language
    (beside the TSV or one folder up). Source and target come from the file name; --language
    overrides the target."""
    if path.is_dir():
        found = sorted(path.glob("covost_v2.*.tsv"))
        tests = [f for f in found if f".{split}." in f.name] or found
        if not tests:
            raise StepvoiceError(f"no CoVoST 2 file (covost_v2.SRC_TGT.tsv) in {path}")
        path = tests[0]
    m = _COVOST_NAME.search(path.name)
    source = m.group(1).lower() if m else ""
    target = (language or (m.group(2) if m else "")).lower()
    if not target:
        raise StepvoiceError(f"{path.name}: cannot tell the target language; give --language")
    clips = next((d for d in (path.parent / "clips", path.parent.parent / "clips") if d.is_dir()),
                 path.parent / "clips")
    items: list[Item] = []
    for row in _read_tsv(path):
        if "path" not in row or "translation" not in row:
            raise StepvoiceError(f"{path}: expected CoVoST 2 columns 'path' and 'translation'")
        if row.get("split") and row["split"] != split:
            continue
        items.append(Item(Path(row["path"]).stem, (str(clips / row["path"]),), row["translation"],
                          group=f"{source}-{target}", extra={"source_text": row.get("sentence", "")}))
    return Dataset(f"CoVoST 2 {source}->{target}", f"covost2-{source}-{target}", target,
                   tuple(sorted(items, key=lambda i: i.id)), source_language=source)


# ---- StepEval-Audio-Toolcall ---------------------------------------------------------------------------

_ROLES = {"human": "human", "user": "human", "assistant": "assistant", "bot": "assistant", "gpt": "assistant",
          "tool": "input", "function": "input", "observation": "input", "input": "input", "system": "system"}
_TOOL_FILE = re.compile(r"^(?P<family>.+)_(?P<polarity>positive|negative)\.jsonl$")


def load_toolcall(path: Path) -> Dataset:
    """StepEval-Audio-Toolcall: FAMILY_positive.jsonl / FAMILY_negative.jsonl (families get_date_time,
    get_weather, timbre, web_search) and a wav/ folder. One conversation per line:

        {"id": ..., "turns": [{"role": "human", "audio": "wav/x.wav", "text": ...},
                              {"role": "assistant", "text": ...}, ...],
         "expected": {"name": "get_weather", "arguments": {"location": "Paris"}} | null}

    Also read: the list under "messages"/"conversation"/"dialog", "content" for text,
    "wav"/"audio_path" for audio, "gold_call"/"tool_call"/"label" and "args"/"parameters" for the
    expected call, or a final assistant turn holding a <tool_call>. A human turn without an audio
    path uses wav/FILE-LINE-K.wav (K counts the human turns from 0) when that file exists. The last
    human turn is the request; the turns before it are history."""
    files = [path] if path.is_file() else sorted(path.glob("*_positive.jsonl")) + sorted(path.glob("*_negative.jsonl"))
    files = [f for f in files if _TOOL_FILE.match(f.name)]
    if not files:
        raise StepvoiceError(f"no StepEval tool-call files (FAMILY_positive.jsonl / FAMILY_negative.jsonl) in {path}")
    items: list[Item] = []
    for f in sorted(files):
        m = _TOOL_FILE.match(f.name)
        assert m is not None
        family, positive = m.group("family"), m.group("polarity") == "positive"
        for line_no, line in enumerate(f.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                items.append(_toolcall_item(f, line_no, line, family, positive))
    return Dataset("StepEval-Audio-Toolcall", "stepeval-toolcall", "zh", tuple(items))


def _toolcall_item(f: Path, line_no: int, line: str, family: str, positive: bool) -> Item:
    from stepvoice.engine.toolcall import parse_tool_calls

    where = f"{f.name}:{line_no + 1}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise StepvoiceError(f"{where}: not JSON: {e.msg}") from None
    turns_raw = _first(row, "turns", "messages", "conversation", "dialog", default=None)
    if not isinstance(turns_raw, list) or not turns_raw:
        raise StepvoiceError(f"{where}: expected a list of turns under 'turns' (or 'messages')")
    expected = _first(row, "expected", "gold_call", "tool_call", "label", default=None)
    turns: list[Turn] = []
    human_k = 0
    for t in turns_raw:
        role = _ROLES.get(str(t.get("role", "")).lower())
        if role is None:
            raise StepvoiceError(f"{where}: unknown role {t.get('role')!r} (expected human/user, assistant, tool/input)")
        if role == "system":
            continue  # the task preset gives the system prompt
        text = _first(t, "text", "content", default="")
        text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
        audio = _first(t, "audio", "wav", "audio_path", default=None)
        if role == "human":
            if audio is None:
                guess = f.parent / "wav" / f"{f.name}-{line_no}-{human_k}.wav"
                audio = str(guess) if guess.is_file() else None
            else:
                audio = str(_resolve(f.parent, audio))
            human_k += 1
        turns.append(Turn(role, text, audio))
    if turns and turns[-1].role == "assistant":  # the gold answer as the last turn
        last = turns.pop()
        if expected is None:
            _, calls = parse_tool_calls(last.text)
            if calls:
                expected = {"name": calls[0].name, "arguments": calls[0].arguments}
    if not turns or turns[-1].role != "human":
        raise StepvoiceError(f"{where}: the conversation must end with a human turn")
    request = turns[-1]
    if isinstance(expected, Mapping):
        expected = {"name": expected.get("name"),
                    "arguments": dict(_first(expected, "arguments", "args", "parameters", default={}) or {})}
    else:
        expected = None
    return Item(str(row.get("id", f"{f.stem}-{line_no}")), (request.audio,) if request.audio else (), expected,
                question="" if request.audio else request.text, group=family, history=tuple(turns[:-1]),
                extra={"family": family, "positive": positive})


# ---- StepEval-Audio-Paralinguistic -----------------------------------------------------------------

def _json_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise StepvoiceError(f"{path.name}:{n}: not JSON: {e.msg}") from None
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StepvoiceError(f"{path.name}: not JSON: {e.msg}") from None
    if isinstance(data, dict):
        data = _first(data, "data", "items", "samples", default=list(data.values()))
    if not isinstance(data, list):
        raise StepvoiceError(f"{path.name}: expected a list of items")
    return data


def _one_file(path: Path, what: str) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("*.jsonl")) + sorted(path.glob("*.json"))
    if not found:
        raise StepvoiceError(f"no {what} file (.jsonl or .json) in {path}")
    return found[0]


def load_paralinguistic(path: Path) -> Dataset:
    """StepEval-Audio-Paralinguistic exported to json/jsonl, one item per line: the audio ("audio",
    "wav", "audio_path" or "path", relative to the file), the question ("question", "prompt" or
    "instruction"; optional), the label ("answer", "label" or "reference"), the dimension ("task",
    "category", "dimension" or "type": gender, age, timbre, scenario, event, emotion, pitch, rhythm,
    speed, style, vocal) and optional "choices"."""
    f = _one_file(path, "paralinguistic")
    items = []
    for n, row in enumerate(_json_rows(f)):
        audio = _first(row, "audio", "wav", "audio_path", "path")
        answer = _first(row, "answer", "label", "reference")
        if not isinstance(audio, str) or answer is None:
            raise StepvoiceError(f"{f.name}: item {n + 1} needs an audio path and an answer")
        items.append(Item(str(_first(row, "id", "key", default=f"item-{n:05d}")), (str(_resolve(f.parent, audio)),),
                          str(answer), question=str(_first(row, "question", "prompt", "instruction", default="")),
                          choices=tuple(str(c) for c in _first(row, "choices", "options", default=[]) or []),
                          group=str(_first(row, "task", "category", "dimension", "type", default="")).lower()))
    return Dataset("StepEval-Audio-Paralinguistic", "stepeval-paralinguistic", "zh", tuple(items))


# ---- MMAU --------------------------------------------------------------------------------------------

def load_mmau(path: Path) -> Dataset:
    """MMAU (mmau-test-mini.json): a list of {"id", "audio_id" (path relative to the json, e.g.
    ./test-mini-audios/ID.wav), "question", "choices", "answer", "task" (sound, speech, music)}."""
    f = _one_file(path, "MMAU")
    items = []
    for n, row in enumerate(_json_rows(f)):
        audio = _first(row, "audio_id", "audio", "audio_path")
        choices = _first(row, "choices", "options")
        if not isinstance(audio, str) or not isinstance(choices, list) or "answer" not in row:
            raise StepvoiceError(f"{f.name}: item {n + 1} needs audio_id, choices and answer")
        items.append(Item(str(row.get("id", f"item-{n:05d}")), (str(_resolve(f.parent, audio)),), str(row["answer"]),
                          question=str(row.get("question", "")), choices=tuple(str(c) for c in choices),
                          group=str(row.get("task", "")).lower()))
    return Dataset("MMAU test-mini" if "mini" in f.name else "MMAU", "mmau", "en", tuple(items))
