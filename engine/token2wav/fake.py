"""A fake `token2wav/` folder in the official layout, with random weights.

`flow.yaml` (official tag format), `flow.pt` and `hift.pt` (real key names,
`generator.` prefix on HiFT as in the official file), and two small valid
ONNX graphs with the real models' inputs and outputs:
- `campplus.onnx`: fbank (1, T, 80) float -> (1, 192) float
  (RMS over time per bin, then a random projection);
- `speech_tokenizer_v2_25hz.onnx`: feats (1, 128, T) float + feats_length (1,)
  int32 -> codes (1, ceil(T/4)) int32, 25 per second (strided conv + argmax).
Sizes: "tiny" (tests), "small" (real widths, fewer layers), "real" (the real
hyperparameters, ~180 M random parameters, for benches and slow tests).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stepvoice.engine.errors import ConfigError
from stepvoice.engine.token2wav.config import CFMConfig, DiTConfig, EncoderConfig, FlowConfig, HiFTConfig, dump_flow_yaml
from stepvoice.engine.token2wav.flow import CausalMaskedDiffWithXvec
from stepvoice.engine.token2wav.hift import HiFTGenerator
from stepvoice.engine.token2wav.voice import CAMPPLUS_FILE, SPEAKER_DIM, TOKENIZER_FILE
from stepvoice.engine.token2wav.weights import FLOW_PT, FLOW_YAML, HIFT_PREFIX, HIFT_PT

SIZES = ("tiny", "small", "real")
TOKENIZER_STRIDE = 4  # 100 feature frames/s -> 25 codes/s
TOKENIZER_CLASSES = 256  # argmax classes, spread over the code range
TOKENIZER_SPREAD = 25  # class k -> code 25 k (<= 6375)
ONNX_OPSET = 17


def flow_config(size: str) -> FlowConfig:
    if size == "real":
        return FlowConfig()
    if size == "small":
        enc = EncoderConfig(num_blocks=2, num_up_blocks=1)
        return FlowConfig(encoder=enc, decoder=CFMConfig(estimator=DiTConfig(depth=4)))
    if size == "tiny":
        enc = EncoderConfig(input_size=64, output_size=64, attention_heads=2, linear_units=128,
                            num_blocks=2, num_up_blocks=1)
        dit = DiTConfig(depth=2, num_heads=2, head_dim=32, hidden_size=64)
        return FlowConfig(input_size=64, encoder=enc, decoder=CFMConfig(estimator=dit))
    raise ConfigError(f"unknown token2wav fake size {size!r} (choose {', '.join(SIZES)})")


def hift_config(size: str) -> HiFTConfig:
    if size == "real":
        return HiFTConfig()
    if size == "small":
        return HiFTConfig(base_channels=128, f0_cond_channels=128)
    if size == "tiny":
        return HiFTConfig(base_channels=32, f0_cond_channels=32)
    raise ConfigError(f"unknown token2wav fake size {size!r} (choose {', '.join(SIZES)})")


def random_flow_state(config: FlowConfig, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    flow = CausalMaskedDiffWithXvec(config)
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if name.endswith(("pos_bias_u", "pos_bias_v")):
                p.normal_(0.0, 0.1)  # zero-initialised in the module; trained values are not
    return flow.state_dict()


def random_hift_state(config: HiFTConfig, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return HiFTGenerator(config).state_dict()


def _campplus_graph(seed: int):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    proj = numpy_helper.from_array((rng.standard_normal((80, SPEAKER_DIM)) * 0.1).astype(np.float32), "proj")
    # The input is mean-normalised over time, so pool its spread (RMS per bin), not its mean.
    nodes = [helper.make_node("Mul", ["input", "input"], ["squared"]),
             helper.make_node("ReduceMean", ["squared"], ["power"], axes=[1], keepdims=0),
             helper.make_node("Sqrt", ["power"], ["pooled"]),
             helper.make_node("MatMul", ["pooled", "proj"], ["output"])]
    graph = helper.make_graph(
        nodes, "campplus_fake",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, SPEAKER_DIM])],
        initializer=[proj])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])


def _tokenizer_graph(seed: int):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed + 1)
    weight = (rng.standard_normal((TOKENIZER_CLASSES, 128, TOKENIZER_STRIDE)) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "conv_w"),
             numpy_helper.from_array(np.array(TOKENIZER_SPREAD, dtype=np.int64), "spread")]
    nodes = [
        helper.make_node("Conv", ["feats", "conv_w"], ["scores"], strides=[TOKENIZER_STRIDE],
                         pads=[0, TOKENIZER_STRIDE - 1]),  # (1, classes, ceil(T/4))
        helper.make_node("ArgMax", ["scores"], ["classes"], axis=1, keepdims=0),
        helper.make_node("Mul", ["classes", "spread"], ["codes64"]),
        helper.make_node("Cast", ["codes64"], ["indices"], to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes, "speech_tokenizer_fake",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("indices", TensorProto.INT32, [1, "N"])],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])


def write_fake_token2wav(directory: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write the five token2wav files into `directory` (created); returns it."""
    import onnx

    if size not in SIZES:
        raise ConfigError(f"unknown token2wav fake size {size!r} (choose {', '.join(SIZES)})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = flow_config(size)
    (directory / FLOW_YAML).write_text(dump_flow_yaml(config), encoding="utf-8")
    torch.save(random_flow_state(config, seed), directory / FLOW_PT)
    hift = random_hift_state(hift_config(size), seed + 1)
    torch.save({HIFT_PREFIX + k: v for k, v in hift.items()}, directory / HIFT_PT)
    for name, model in ((CAMPPLUS_FILE, _campplus_graph(seed)), (TOKENIZER_FILE, _tokenizer_graph(seed))):
        onnx.checker.check_model(model)
        onnx.save(model, str(directory / name))
    return directory
