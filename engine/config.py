"""Dataclasses that mirror a Step-Audio 2 `config.json`.

Field names equal the JSON keys, so a config is built with `Config(**json)`
(unknown keys are kept in `extra`, so newer files still load). The LLM half is
a plain Qwen2 (`text_config`); `to_qwen2()` hands it to transformers.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepvoice.engine.errors import ConfigError

MODEL_TYPE = "step_audio_2"


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a JSON mapping: unknown keys go to `extra`,
    missing required keys give one `ConfigError` naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{where} is missing field(s): {', '.join(missing)}")
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    try:
        return cls(**known, extra=extra)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _positive(where: str, **values: Any) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


@dataclass
class TextConfig:
    """`text_config`: the Qwen2 language model."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 16384
    hidden_act: str = "silu"
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 151643
    eos_token_id: int | list[int] | None = 151643
    pad_token_id: int | None = None
    torch_dtype: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive(
            "text_config",
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
        )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        if self.tie_word_embeddings:
            raise ValueError("Step-Audio 2 has an untied lm_head; tie_word_embeddings must be false")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_dim(self) -> int:
        return self.head_dim * self.num_key_value_heads

    def to_qwen2(self) -> Any:
        """The transformers `Qwen2Config` for this backbone (sdpa attention, no sliding window)."""
        from transformers import Qwen2Config

        kwargs: dict[str, Any] = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            hidden_act=self.hidden_act,
            tie_word_embeddings=False,
            use_sliding_window=False,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )
        # transformers 5 moved rope_theta into rope_parameters; 4.x takes it directly.
        if _takes_rope_parameters():
            kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": float(self.rope_theta)}
        else:
            kwargs["rope_theta"] = float(self.rope_theta)
        config = Qwen2Config(**kwargs)
        config._attn_implementation = "sdpa"
        return config

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def _takes_rope_parameters() -> bool:
    import inspect

    from transformers import Qwen2Config

    return "rope_parameters" in inspect.signature(Qwen2Config).parameters


@dataclass
class AudioEncoderConfig:
    """`audio_encoder_config`: the Whisper-style encoder and its adapter."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    llm_dim: int
    kernel_size: int = 3
    adapter_stride: int = 2
    # Not a config.json key: the adapter's hidden width is fixed at 2048 in the
    # official model; kept here so fake checkpoints may shrink it.
    adapter_hidden_size: int = 2048
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive(
            "audio_encoder_config",
            n_mels=self.n_mels,
            n_audio_ctx=self.n_audio_ctx,
            n_audio_state=self.n_audio_state,
            n_audio_head=self.n_audio_head,
            n_audio_layer=self.n_audio_layer,
            llm_dim=self.llm_dim,
            kernel_size=self.kernel_size,
            adapter_stride=self.adapter_stride,
            adapter_hidden_size=self.adapter_hidden_size,
        )
        if self.n_audio_state % self.n_audio_head:
            raise ValueError("n_audio_state must be divisible by n_audio_head")

    def to_dict(self) -> dict[str, Any]:
        d = _to_dict(self)
        if self.adapter_hidden_size == 2048:
            d.pop("adapter_hidden_size")  # the official file does not carry it
        return d


@dataclass
class StepAudio2Config:
    """A whole `config.json`."""

    text_config: TextConfig
    audio_encoder_config: AudioEncoderConfig
    model_type: str = MODEL_TYPE
    architectures: list[str] = field(default_factory=lambda: ["StepAudio2ForCausalLM"])
    torch_dtype: str | None = "bfloat16"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StepAudio2Config":
        if not isinstance(data, dict):
            raise ConfigError("config.json must be a JSON object")
        model_type = data.get("model_type")
        if model_type != MODEL_TYPE:
            raise ConfigError(
                f"config.json has model_type {model_type!r}, expected {MODEL_TYPE!r} (not a Step-Audio 2 checkpoint)"
            )
        missing = [k for k in ("text_config", "audio_encoder_config") if k not in data]
        if missing:
            raise ConfigError(f"config.json is missing field(s): {', '.join(missing)}")
        rest = dict(data)
        text = _build(TextConfig, rest.pop("text_config"), "text_config")
        audio = _build(AudioEncoderConfig, rest.pop("audio_encoder_config"), "audio_encoder_config")
        if audio.llm_dim != text.hidden_size:
            raise ConfigError(
                f"audio_encoder_config.llm_dim ({audio.llm_dim}) must equal text_config.hidden_size ({text.hidden_size})"
            )
        return _build(cls, {**rest, "text_config": text, "audio_encoder_config": audio}, "config.json")

    @classmethod
    def from_file(cls, path: str | Path) -> "StepAudio2Config":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = _to_dict(self)
        d["text_config"] = self.text_config.to_dict()
        d["audio_encoder_config"] = self.audio_encoder_config.to_dict()
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _to_dict(obj: Any) -> dict[str, Any]:
    d = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "extra"}
    d.update(obj.extra)
    return d
