"""Safetensors shards <-> module tensors.

Loading never holds a second full copy of the weights: the model is built on
the meta device and each tensor read from a shard (memory-mapped) is cast to
the target dtype and assigned in place of its meta placeholder.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from stepvoice.engine.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
log = logging.getLogger(__name__)


def read_index(directory: Path) -> dict[str, str]:
    """tensor name -> shard file name, from `model.safetensors.index.json`
    (or the single `model.safetensors` of an unsharded checkpoint)."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"cannot read {index}: {e}") from None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: weight_map must be an object")
        return {str(k): str(v) for k, v in weight_map.items()}
    single = directory / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as f:
            return {k: single.name for k in f.keys()}
    raise CheckpointError(f"no {INDEX_FILE} (or model.safetensors) in {directory}")


def shard_shapes(directory: Path, weight_map: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor in the shards, read from their headers (no data read).
    Raises CheckpointError naming a missing or unreadable shard."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for shard in sorted(set(weight_map.values())):
        path = directory / shard
        if not path.is_file():
            raise CheckpointError(f"missing shard {shard} (listed in {INDEX_FILE})")
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    shapes[name] = tuple(f.get_slice(name).get_shape())
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read shard {shard}: {e}") from None
    return shapes


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[leaf] = value


def load_into(model: nn.Module, directory: Path, device: torch.device, dtype: torch.dtype,
              quantize: str = "none", stored: dict | None = None) -> None:
    """Fill `model` (built on the meta device) from the shards in `directory`.

    `quantize` ("int8"/"int4") quantizes each linear layer as soon as its weight
    is read, so the float copy of only one tensor exists at a time. `stored` is
    the `stepvoice_quantization` block of a quantized folder: its weights are
    read as their saved components (kept in their own dtypes) and rebuilt.
    Raises CheckpointError for a missing shard, a missing tensor or a shape
    mismatch; tensors the model does not have are logged and skipped.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    weight_map = read_index(directory)
    components: dict[str, str] = {}  # shard tensor name -> the quantized weight it is part of
    if stored:
        from stepvoice.engine.quantize import stored_names

        for weight, parts in stored_names(stored).items():
            components.update({p: weight for p in parts})
    have = set(weight_map) | {components[n] for n in weight_map if n in components}
    missing = sorted(set(expected) - have)
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensor(s), first: {missing[0]}")
    by_shard: dict[str, list[str]] = defaultdict(list)
    for name, shard in weight_map.items():
        if name in expected or name in components:
            by_shard[shard].append(name)
        else:
            log.warning("ignoring tensor %s not used by the model", name)
    pending: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)  # quantized weight -> components read so far
    # safetensors reads straight onto cpu/cuda; other devices go through cpu one tensor at a time.
    read_device = str(device) if device.type in ("cpu", "cuda") else "cpu"
    shards = sorted(by_shard.items())
    from tqdm import tqdm

    # A bar per shard on a terminal (the 16.6 GB checkpoint takes a while on slow disks); silent elsewhere.
    show = len(shards) > 1 and sys.stderr.isatty() and os.environ.get("TQDM_DISABLE") != "1"
    for shard, names in tqdm(shards, desc="loading weights", unit="shard", disable=not show, leave=False):
        path = directory / shard
        if not path.is_file():
            raise CheckpointError(f"missing shard {shard} (listed in {INDEX_FILE})")
        try:
            _load_shard(model, path, names, expected, read_device, device, dtype, quantize, stored, components, pending)
        except CheckpointError:
            raise
        except Exception as e:  # safetensors' own errors: truncated or corrupt files
            raise CheckpointError(f"cannot read shard {shard}: {e}") from None


def _load_shard(model: nn.Module, path: Path, names: list[str], expected: dict[str, tuple[int, ...]],
                read_device: str, device: torch.device, dtype: torch.dtype, quantize: str = "none",
                stored: dict | None = None, components: dict[str, str] | None = None,
                pending: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=read_device) as f:
        present = set(f.keys())
        for name in names:
            if name not in present:
                raise CheckpointError(f"tensor {name} is not in {path.name} as the index says")
            if components and name in components:  # one part of a stored quantized weight
                _collect_component(model, name, f.get_tensor(name).to(device), stored, components, pending)
                continue
            shape = tuple(f.get_slice(name).get_shape())
            if shape != expected[name]:
                raise CheckpointError(f"tensor {name} has shape {list(shape)}, expected {list(expected[name])}")
            _set_tensor(model, name, f.get_tensor(name).to(device=device, dtype=dtype))
            if quantize != "none":
                from stepvoice.engine.quantize import maybe_quantize_loaded

                maybe_quantize_loaded(model, name, quantize)


def _collect_component(model: nn.Module, name: str, value: torch.Tensor, stored: dict, components: dict[str, str],
                       pending: dict[str, dict[str, torch.Tensor]]) -> None:
    """Keep a component until its weight has all of them (they may sit in different shards), then rebuild it."""
    from stepvoice.engine.quantize import rebuild

    weight = components[name]
    entry = stored["weights"][weight]
    pending[weight][name[len(weight) + 1:]] = value
    if len(pending[weight]) == len(entry["tensors"]):
        _set_tensor(model, weight, rebuild(entry, pending.pop(weight)))


def save_shards(tensors: dict[str, torch.Tensor], directory: Path, n_shards: int) -> list[str]:
    """Write `tensors` as `model-0000i-of-0000n.safetensors` + the index; returns the file names.

    Tensors are spread by size so each shard holds a similar number of bytes."""
    from safetensors.torch import save_file

    names = list(tensors)
    n_shards = max(1, min(n_shards, len(names)))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    target = total / n_shards
    groups: list[list[str]] = [[]]
    size = 0
    for name in names:
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if groups[-1] and size + nbytes > target * len(groups) and len(groups) < n_shards:
            groups.append([])
        groups[-1].append(name)
        size += nbytes
    while len(groups) < n_shards:  # a few huge tensors: split the largest group
        big = max(range(len(groups)), key=lambda i: len(groups[i]))
        half = len(groups[big]) // 2
        groups[big : big + 1] = [groups[big][:half], groups[big][half:]]
    files = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map: dict[str, str] = {}
    for file, group in zip(files, groups):
        save_file({n: tensors[n].contiguous() for n in group}, str(directory / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return files


def tensor_names(model: nn.Module) -> Iterable[tuple[str, tuple[int, ...]]]:
    return ((k, tuple(v.shape)) for k, v in model.state_dict(keep_vars=True).items())
