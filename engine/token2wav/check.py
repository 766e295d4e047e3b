"""`check_token2wav(dir)`: what is wrong with a token2wav/ folder (empty list = OK).

Checks that every file is there and readable, that flow.yaml parses, that
flow.pt / hift.pt hold exactly the tensors (names and shapes) the modules
built from it expect (built on the meta device: no memory), and that both
ONNX files load and have the expected inputs and outputs.
"""
from __future__ import annotations

from pathlib import Path

import torch

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.token2wav.config import load_flow_config
from stepvoice.engine.token2wav.flow import CausalMaskedDiffWithXvec
from stepvoice.engine.token2wav.hift import HiFTGenerator
from stepvoice.engine.token2wav.voice import CAMPPLUS_FILE, TOKENIZER_FILE
from stepvoice.engine.token2wav.weights import (FLOW_PT, FLOW_YAML, HIFT_PT, check_state, hift_config_from_state,
                                      normalize_hift_keys, read_state)

# (number of inputs, rank of input 0, rank of output 0)
_ONNX_SIGNATURES = {CAMPPLUS_FILE: (1, 3, 2), TOKENIZER_FILE: (2, 3, 2)}


def _check_flow(directory: Path) -> list[str]:
    config = load_flow_config(directory / FLOW_YAML)
    state = read_state(directory / FLOW_PT)
    with torch.device("meta"):
        flow = CausalMaskedDiffWithXvec(config)
    return check_state(flow, state, FLOW_PT)


def _check_hift(directory: Path) -> list[str]:
    state = normalize_hift_keys(read_state(directory / HIFT_PT))
    with torch.device("meta"):
        hift = HiFTGenerator(hift_config_from_state(state))
    return check_state(hift, state, HIFT_PT)


def _check_onnx(path: Path) -> list[str]:
    import onnx

    if not path.is_file():
        return [f"missing {path.name}"]
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        return [f"cannot load {path.name} (corrupt or not ONNX): {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}"]
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    n_inputs, in_rank, out_rank = _ONNX_SIGNATURES[path.name]
    problems = []
    if len(inputs) != n_inputs:
        problems.append(f"{path.name} has {len(inputs)} inputs, expected {n_inputs}")
    elif len(inputs[0].type.tensor_type.shape.dim) != in_rank:
        problems.append(f"{path.name} input 0 has rank {len(inputs[0].type.tensor_type.shape.dim)}, expected {in_rank}")
    if not graph.output or len(graph.output[0].type.tensor_type.shape.dim) not in (0, out_rank):
        problems.append(f"{path.name} output 0 should have rank {out_rank}")
    return problems


def check_token2wav(directory: str | Path) -> list[str]:
    directory = Path(directory)
    if not directory.is_dir():
        return [f"missing folder {directory}"]
    problems: list[str] = []
    for name in (FLOW_YAML, FLOW_PT, HIFT_PT, CAMPPLUS_FILE, TOKENIZER_FILE):
        if not (directory / name).is_file():
            problems.append(f"missing {name}")
    for check, needs in ((_check_flow, (FLOW_YAML, FLOW_PT)), (_check_hift, (HIFT_PT,))):
        if all((directory / name).is_file() for name in needs):
            try:
                problems += check(directory)
            except StepvoiceError as exc:
                problems.append(str(exc))
    for name in (CAMPPLUS_FILE, TOKENIZER_FILE):
        if (directory / name).is_file():
            problems += _check_onnx(directory / name)
    return problems
