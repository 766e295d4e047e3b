"""Generation options shared by every backend, and how unset values are filled in.

A sampling field left as None is "not set": it is filled, in this order, from
the checkpoint's `generation_config.json` (when it has one) and then from
transformers' own defaults, which is what the official HF code gets: it
builds a `GenerationConfig` from the example's keyword arguments only
(stepaudio2.py lines 46-51), and `generate()` fills every value the caller did
not set from the model's generation config, then from the global defaults
(transformers `GenerationMixin._prepare_generation_config`,
`GenerationConfig._get_default_generation_params`: do_sample False,
temperature 1.0, top_k 50, top_p 1.0, repetition_penalty 1.0).

So a request with nothing set is GREEDY on a checkpoint without
`generation_config.json`, and sampling with only a temperature also applies
top_k=50. Task presets (assistant.presets) set what each official example sets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping

Reply = Literal["text", "speech", "think"]
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty")
DEFAULT_MAX_NEW_TOKENS = 2048  # stepaudio2.py line 46: the official call's own default


@dataclass(frozen=True)
class SamplingDefaults:
    """What fills unset sampling fields: a checkpoint's generation_config.json or HF's defaults.

    `do_sample` False means an unset temperature resolves to greedy (0)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    source: str = "transformers defaults"


HF_DEFAULTS = SamplingDefaults()


def read_generation_config(checkpoint_dir: str | Path) -> SamplingDefaults:
    """Defaults from `checkpoint_dir/generation_config.json`, HF's defaults for keys it
    lacks; HF_DEFAULTS when the file is absent. A broken file is an error, not a silent default."""
    from stepvoice.engine.errors import CheckpointError

    path = Path(checkpoint_dir) / "generation_config.json"
    if not path.is_file():
        return HF_DEFAULTS
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    values: dict[str, Any] = {}
    for name, kind in (("do_sample", bool), ("temperature", float), ("top_p", float), ("top_k", int),
                       ("repetition_penalty", float)):
        if doc.get(name) is not None:
            try:
                values[name] = kind(doc[name])
            except (TypeError, ValueError):
                raise CheckpointError(f"{path}: {name} must be a {kind.__name__}, not {doc[name]!r}") from None
    return replace(HF_DEFAULTS, source=str(path), **values)


@dataclass
class GenerationOptions:
    """Sampling and reply mode. temperature 0 means greedy; None means "not set" (see the module doc).

    reply: "text" opens `<|BOT|>assistant\\n`; "speech" adds `<tts_start>` (TA4);
    "think" lets a Think model reason first, then speak.
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    reply: Reply = "text"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.reply not in ("text", "speech", "think"):
            raise ValueError(f"reply must be text, speech or think, not {self.reply!r}")

    @property
    def is_resolved(self) -> bool:
        return all(getattr(self, name) is not None for name in SAMPLING_FIELDS)

    def resolved(self, defaults: SamplingDefaults | None = None) -> "GenerationOptions":
        """A copy with every sampling field set: unset ones come from `defaults`
        (a checkpoint's generation_config.json) or transformers' defaults.
        An unset temperature is greedy unless the defaults say do_sample."""
        d = defaults or HF_DEFAULTS
        temperature = self.temperature
        if temperature is None:
            temperature = d.temperature if d.do_sample else 0.0
        return replace(
            self,
            temperature=float(temperature),
            top_p=float(self.top_p if self.top_p is not None else d.top_p),
            top_k=int(self.top_k if self.top_k is not None else d.top_k),
            repetition_penalty=float(self.repetition_penalty if self.repetition_penalty is not None
                                     else d.repetition_penalty),
        )

    def report(self) -> dict[str, Any]:
        """The options a user sees (`ask --json`, run transcripts): the sampling values,
        max_new_tokens and seed (None = not set / random)."""
        return {name: getattr(self, name) for name in ("temperature", "top_p", "top_k", "repetition_penalty",
                                                        "max_new_tokens", "seed")}

    def explicit(self) -> dict[str, Any]:
        """The fields that are set (not None), reply excluded."""
        return {f.name: v for f in fields(self) if f.name != "reply" and (v := getattr(self, f.name)) is not None}


def layered(reply: Reply, *layers: Mapping[str, Any] | None) -> GenerationOptions:
    """Options from value layers, the FIRST layer that sets a field wins (None = not set)."""
    values: dict[str, Any] = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            if value is not None and name not in values and name != "reply":
                values[name] = value
    return GenerationOptions(reply=reply, **values)


def effective_report(backend: Any, requested: GenerationOptions | None) -> dict[str, Any] | None:
    """The options that ran, for `ask --json` and run transcripts: the backend's own resolved
    options when it keeps them (the local engine: after generation_config.json and transformers'
    defaults), else the request's (None = left to the backend, e.g. a vLLM server's defaults)."""
    ran = getattr(backend, "last_options", None) or requested
    return ran.report() if ran is not None else None


__all__ = [
    "effective_report",
    "GenerationOptions", "SamplingDefaults", "HF_DEFAULTS", "read_generation_config", "layered",
    "SAMPLING_FIELDS", "DEFAULT_MAX_NEW_TOKENS", "Reply",
]
