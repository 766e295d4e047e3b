"""token2wav configuration: `flow.yaml` read into dataclasses, and the HiFT values.

The checkpoint's `flow.yaml` is HyperPyYAML whose objects carry four `!new:`
tags naming the official classes; their mappings are the constructor
arguments. It is read here with a plain YAML safe loader that maps each tag to
one of these dataclasses (field names = the YAML keys), so nothing is imported
or built from the file. `dump_flow_yaml` writes the same format back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stepvoice.engine.errors import CheckpointError

FLOW_TAG = "!new:cosyvoice2.flow.flow.CausalMaskedDiffWithXvec"
ENCODER_TAG = "!new:cosyvoice2.transformer.upsample_encoder_v2.UpsampleConformerEncoderV2"
CFM_TAG = "!new:cosyvoice2.flow.flow_matching.CausalConditionalCFM"
DIT_TAG = "!new:cosyvoice2.flow.decoder_dit.DiT"

SAMPLE_RATE = 24000  # vocoder output
CODE_RATE = 25  # speech codes per second
NUM_CODES = 6561  # CosyVoice2 speech codes 0..6560


@dataclass
class EncoderConfig:
    """UpsampleConformerEncoderV2 arguments (official defaults where the YAML is silent)."""

    input_size: int = 512
    output_size: int = 512
    input_layer: str = "linear"
    pre_lookahead_len: int = 3
    num_blocks: int = 6
    num_up_blocks: int = 4
    up_stride: int = 2
    up_scale_factor: float = 2.0
    attention_heads: int = 8
    pos_enc_layer_type: str = "rel_pos_espnet"
    selfattention_layer_type: str = "rel_selfattn"
    key_bias: bool = True
    linear_units: int = 2048
    dropout_rate: float = 0.1
    positional_dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    normalize_before: bool = True
    activation_type: str = "swish"

    def __post_init__(self) -> None:
        _require(self.input_layer == "linear", f"encoder input_layer {self.input_layer!r} (only 'linear')")
        _require(self.pos_enc_layer_type == "rel_pos_espnet", f"encoder pos_enc_layer_type {self.pos_enc_layer_type!r}")
        _require(self.selfattention_layer_type == "rel_selfattn", f"encoder selfattention_layer_type {self.selfattention_layer_type!r}")
        _require(self.activation_type == "swish", f"encoder activation_type {self.activation_type!r}")
        _require(self.normalize_before, "encoder normalize_before false")
        _require(self.output_size % self.attention_heads == 0, "encoder output_size not divisible by attention_heads")
        _require(self.pre_lookahead_len >= 1 and self.up_stride >= 1, "encoder pre_lookahead_len / up_stride < 1")
        _require(float(self.up_scale_factor) == float(self.up_stride), "encoder up_scale_factor differs from up_stride")


@dataclass
class DiTConfig:
    """DiT estimator arguments."""

    in_channels: int = 320
    out_channels: int = 80
    mlp_ratio: float = 4.0
    depth: int = 16
    num_heads: int = 8
    head_dim: int = 64
    hidden_size: int = 512
    # Fixed by the official module (not YAML keys): timestep features and the causal conv kernel.
    frequency_embedding_size: int = 256
    timestep_scale: float = 1000.0
    conv_kernel_size: int = 3

    def __post_init__(self) -> None:
        _require(min(self.depth, self.num_heads, self.head_dim, self.hidden_size) > 0, "DiT sizes must be positive")


@dataclass
class CFMConfig:
    """CausalConditionalCFM arguments: the estimator and the guidance rate."""

    inference_cfg_rate: float = 0.7
    estimator: DiTConfig = field(default_factory=DiTConfig)

    def __post_init__(self) -> None:
        _require(self.inference_cfg_rate > 0, "decoder inference_cfg_rate must be > 0")


@dataclass
class FlowConfig:
    """CausalMaskedDiffWithXvec arguments (the `flow` key of flow.yaml)."""

    input_size: int = 512
    output_size: int = 80
    spk_embed_dim: int = 192
    output_type: str = "mel"
    vocab_size: int = NUM_CODES
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: CFMConfig = field(default_factory=CFMConfig)
    # Not in flow.yaml: the fixed flow-matching noise covers 600 s of 50 Hz mel.
    noise_frames: int = 30000

    def __post_init__(self) -> None:
        _require(self.encoder.input_size == self.input_size, "encoder input_size differs from flow input_size")
        est = self.decoder.estimator
        _require(est.out_channels == self.output_size, "DiT out_channels differs from flow output_size")
        _require(est.in_channels == 4 * self.output_size,
                 "DiT in_channels must be 4 x output_size (x, mu, speaker, cond)")

    @property
    def up_rate(self) -> int:
        return self.encoder.up_stride


@dataclass
class HiFTConfig:
    """HiFTGenerator arguments (the official code builds it with these defaults)."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = SAMPLE_RATE
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: list[int] = field(default_factory=lambda: [8, 5, 3])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 11, 7])
    istft_params: dict[str, int] = field(default_factory=lambda: {"n_fft": 16, "hop_len": 4})
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    source_resblock_kernel_sizes: list[int] = field(default_factory=lambda: [7, 7, 11])
    source_resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    # ConvRNNF0Predictor
    f0_cond_channels: int = 512
    f0_num_layers: int = 5

    def __post_init__(self) -> None:
        _require(len(self.upsample_rates) == len(self.upsample_kernel_sizes), "HiFT upsample rates/kernels differ in length")
        _require(self.sampling_rate == SAMPLE_RATE, f"HiFT sampling_rate {self.sampling_rate} (only {SAMPLE_RATE})")

    @property
    def samples_per_frame(self) -> int:
        n = self.istft_params["hop_len"]
        for r in self.upsample_rates:
            n *= r
        return n


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise CheckpointError(f"flow.yaml: unsupported value: {what}")


_TAGS = {FLOW_TAG: FlowConfig, ENCODER_TAG: EncoderConfig, CFM_TAG: CFMConfig, DIT_TAG: DiTConfig}


class _FlowYamlLoader(yaml.SafeLoader):
    """Safe loader that turns the four official tags into config dataclasses."""


def _construct(cls: type):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.MappingNode):
            raise CheckpointError(f"flow.yaml: {node.tag} must hold a mapping")
        values = loader.construct_mapping(node, deep=True)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise CheckpointError(f"flow.yaml: unknown keys under {node.tag}: {', '.join(map(str, unknown))}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise CheckpointError(f"flow.yaml: bad values under {node.tag}: {exc}") from None
    return construct


for _tag, _cls in _TAGS.items():
    _FlowYamlLoader.add_constructor(_tag, _construct(_cls))


def parse_flow_yaml(text: str) -> FlowConfig:
    """The `flow` object of a flow.yaml text; raises `CheckpointError` on anything else."""
    try:
        data = yaml.load(text, Loader=_FlowYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CheckpointError(f"flow.yaml is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("flow"), FlowConfig):
        raise CheckpointError(f"flow.yaml has no `flow: {FLOW_TAG}` object")
    flow = data["flow"]
    if not isinstance(flow.encoder, EncoderConfig) or not isinstance(flow.decoder, CFMConfig) \
            or not isinstance(flow.decoder.estimator, DiTConfig):
        raise CheckpointError("flow.yaml: flow needs tagged encoder, decoder and decoder.estimator objects")
    return flow


def load_flow_config(path: str | Path) -> FlowConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_flow_yaml(text)


# Keys that exist only in our dataclasses (or only as constructor defaults), never in the official YAML.
_NOT_IN_YAML = {"noise_frames", "frequency_embedding_size", "timestep_scale", "conv_kernel_size", "activation_type"}


def dump_flow_yaml(config: FlowConfig) -> str:
    """flow.yaml text in the official tag format for `config`."""
    lines: list[str] = []

    def emit(key: str, obj: Any, tag: str, indent: int) -> None:
        lines.append(" " * indent + f"{key}: {tag}")
        for f in dataclasses.fields(obj):
            if f.name in _NOT_IN_YAML:
                continue
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                sub_tag = {EncoderConfig: ENCODER_TAG, CFMConfig: CFM_TAG, DiTConfig: DIT_TAG}[type(value)]
                emit(f.name, value, sub_tag, indent + 4)
            else:
                lines.append(" " * (indent + 4) + f"{f.name}: {_scalar(value)}")

    emit("flow", config, FLOW_TAG, 0)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)
