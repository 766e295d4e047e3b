"""`check(dir)`: is this folder a complete Step-Audio 2 checkpoint?

Reads only headers and small files (no weights), so it is fast even for the
real 16.6 GB checkpoint. The report names every problem it finds.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from stepvoice.engine.errors import CheckpointError, ConfigError


@dataclass
class CheckReport:
    directory: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_tensors: int = 0
    n_params: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.directory}: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        lines = [head]
        if self.n_tensors:
            lines.append(f"  {self.n_tensors} tensors, {self.n_params:,} parameters")
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def check(directory: str | Path) -> CheckReport:
    """Every expected file, every tensor with its config shape, every special token,
    and (when the token2wav module is installed) the token2wav/ folder."""
    directory = Path(directory)
    report = CheckReport(directory)
    if not directory.is_dir():
        report.problems.append(f"not a folder: {directory}")
        return report
    config = _check_config(directory, report)
    if config is not None:
        _check_tensors(directory, config, report)
    _check_tokenizer(directory, config, report)
    _check_token2wav(directory, report)
    return report


def _check_config(directory: Path, report: CheckReport):
    from stepvoice.engine.config import StepAudio2Config

    file = directory / "config.json"
    if not file.is_file():
        report.problems.append("missing config.json")
        return None
    try:
        return StepAudio2Config.from_file(file)
    except ConfigError as e:
        report.problems.append(f"config.json: {e}")
        return None


def _check_tensors(directory: Path, config, report: CheckReport) -> None:
    from stepvoice.engine.checkpoint import params
    from stepvoice.engine.weights import read_index, shard_shapes

    try:
        weight_map = read_index(directory)
    except CheckpointError as e:
        report.problems.append(str(e))
        return
    expected = dict(params(config))
    quantized = _quantized_components(config, report)
    missing_shards = sorted({s for s in weight_map.values() if not (directory / s).is_file()})
    for shard in missing_shards:
        report.problems.append(f"missing shard {shard}")
    present = {k: v for k, v in weight_map.items() if v not in missing_shards}
    try:
        shapes = shard_shapes(directory, present)
    except CheckpointError as e:
        report.problems.append(str(e))
        return
    for name, shape in expected.items():
        if name in quantized:  # stored as its components (`name.qdata`, `name.scale`, ...)
            absent = [c for c in quantized[name] if c not in shapes]
            if absent:
                report.problems.append(f"missing tensor {absent[0]} (part of quantized {name})")
            continue
        if name not in weight_map:
            report.problems.append(f"missing tensor {name}")
        elif weight_map[name] in missing_shards:
            report.problems.append(f"missing tensor {name} (its shard {weight_map[name]} is missing)")
        elif name not in shapes:
            report.problems.append(f"missing tensor {name} (not in {weight_map[name]} as the index says)")
        elif shapes[name] != shape:
            report.problems.append(f"tensor {name} has shape {list(shapes[name])}, expected {list(shape)}")
    parts = {c for cs in quantized.values() for c in cs}
    extra = sorted(set(shapes) - set(expected) - parts)
    if extra:
        report.notes.append(f"{len(extra)} tensor(s) not used by the model, first: {extra[0]}")
    report.n_tensors = len(expected)
    n = 0
    for shape in expected.values():
        size = 1
        for d in shape:
            size *= d
        n += size
    report.n_params = n
    _compress(report, "missing tensor")


def _quantized_components(config, report: CheckReport) -> dict[str, list[str]]:
    """Quantized weight -> its stored component names, for a folder written by `model quantize`."""
    from stepvoice.engine.quantize import read_quantization, stored_names

    try:
        block = read_quantization(config.extra)
    except CheckpointError as e:
        report.problems.append(str(e))
        return {}
    if block is None:
        return {}
    packed = f", packed for {block['packed_for']}" if block.get("packed_for") else ""
    report.notes.append(f"quantized {block['scheme']}: {len(block['weights'])} linear weights{packed}")
    return stored_names(block)


def _compress(report: CheckReport, prefix: str, keep: int = 8) -> None:
    """Keep the report readable when a whole shard is gone: list a few, count the rest."""
    hits = [p for p in report.problems if p.startswith(prefix)]
    if len(hits) > keep:
        rest = [p for p in report.problems if not p.startswith(prefix)]
        report.problems = rest + hits[:keep] + [f"... and {len(hits) - keep} more {prefix}s"]


def _check_tokenizer(directory: Path, config, report: CheckReport) -> None:
    if not (directory / "tokenizer_config.json").is_file():
        report.problems.append("missing tokenizer_config.json")
    if not (directory / "tokenizer.json").is_file():
        for name in ("vocab.json", "merges.txt"):
            if not (directory / name).is_file():
                report.problems.append(f"missing {name} (and no tokenizer.json)")
    try:
        tokenizer_module = importlib.import_module("stepvoice.engine.tokenizer")
    except ImportError:
        report.notes.append("engine.tokenizer not available: special tokens not checked")
        return
    try:
        tok = tokenizer_module.load_tokenizer(directory)
    except CheckpointError as e:
        report.problems.append(str(e))
        return
    if config is not None:
        top = max(tok.audio_pad_id, tok.eot_id, tok.bot_id, tok.tts_pad_id)
        if top >= config.text_config.vocab_size:
            report.problems.append(
                f"tokenizer id {top} does not fit text_config.vocab_size {config.text_config.vocab_size}"
            )


def _check_token2wav(directory: Path, report: CheckReport) -> None:
    try:
        t2w_check = importlib.import_module("stepvoice.engine.token2wav.check")
    except ImportError:
        report.notes.append("engine.token2wav not available: token2wav/ not checked")
        return
    for problem in t2w_check.check_token2wav(directory / "token2wav"):
        report.problems.append(f"token2wav: {problem}")
