"""Reading `flow.pt` / `hift.pt` and building the modules they fit.

The official folder stores no HiFT config (the official code uses the class
defaults); the few sizes our smaller fakes change are read back from the
tensor shapes in `hift.pt`. Every failure is a one-line `CheckpointError`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stepvoice.engine.errors import CheckpointError
from stepvoice.engine.token2wav.config import FlowConfig, HiFTConfig, load_flow_config
from stepvoice.engine.token2wav.flow import CausalMaskedDiffWithXvec
from stepvoice.engine.token2wav.hift import HiFTGenerator

FLOW_YAML = "flow.yaml"
FLOW_PT = "flow.pt"
HIFT_PT = "hift.pt"
HIFT_PREFIX = "generator."
# Old (pre-parametrization) weight-norm names, accepted from older exports.
_OLD_WEIGHT_NORM = {".weight_g": ".parametrizations.weight.original0",
                    ".weight_v": ".parametrizations.weight.original1"}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved with torch.save (weights only); raises CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"missing {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # pickle / zip / size errors all mean the same to the user
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise CheckpointError(f"cannot read {path.name} (corrupt or not a torch state dict): "
                                  f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name} is not a state dict of tensors")
    return state


def normalize_hift_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key[len(HIFT_PREFIX):] if key.startswith(HIFT_PREFIX) else key
        for old, new in _OLD_WEIGHT_NORM.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    return out


def hift_config_from_state(state: dict[str, torch.Tensor]) -> HiFTConfig:
    """HiFT defaults, with the channel counts that the tensors show."""
    try:
        conv_pre = state["conv_pre.parametrizations.weight.original1"]
        f0_first = state["f0_predictor.condnet.0.parametrizations.weight.original1"]
    except KeyError as exc:
        raise CheckpointError(f"hift.pt lacks {exc.args[0]}") from None
    n_f0 = len({k.split(".")[2] for k in state if k.startswith("f0_predictor.condnet.")})
    return HiFTConfig(in_channels=conv_pre.shape[1], base_channels=conv_pre.shape[0],
                      f0_cond_channels=f0_first.shape[0], f0_num_layers=n_f0)


def check_state(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> list[str]:
    """Problems between a module's expected tensors and a state dict (names and shapes)."""
    expected = module.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"{name} lacks {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{name} has {len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    bad = [k for k in sorted(set(expected) & set(state)) if tuple(expected[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        problems.append(f"{name}: {len(bad)} tensors have the wrong shape (e.g. {k}: "
                        f"{tuple(state[k].shape)}, expected {tuple(expected[k].shape)})")
    return problems


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    problems = check_state(module, state, name)
    if problems:
        raise CheckpointError(problems[0])
    module.load_state_dict(state, strict=True, assign=False)


def load_flow(directory: Path, device: torch.device, dtype: torch.dtype, seed: int) -> CausalMaskedDiffWithXvec:
    config: FlowConfig = load_flow_config(directory / FLOW_YAML)
    state = read_state(directory / FLOW_PT)
    flow = CausalMaskedDiffWithXvec(config, seed=seed)
    _load_into(flow, state, FLOW_PT)
    return flow.to(device=device, dtype=dtype).eval()


def load_hift(directory: Path, device: torch.device) -> HiFTGenerator:
    state = normalize_hift_keys(read_state(directory / HIFT_PT))
    hift = HiFTGenerator(hift_config_from_state(state))
    _load_into(hift, state, HIFT_PT)
    hift.fold_weight_norm()
    return hift.to(device).eval()
