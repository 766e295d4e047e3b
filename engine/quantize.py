"""Weight-only int8 / int4 for the LLM's linear layers, through torchao.

Why torchao: it is PyTorch's own quantization library, its weights are
tensor subclasses that `torch.compile` fuses into the matmul (int8 + compile
is what makes CPU decode faster; int8 eager is slower than bf16 - see
bench/engine_decode.py), and it has int4 kernels for both CUDA (tinygemm)
and the CPU (`_weight_int4pack_mm_for_cpu`). bitsandbytes is CUDA-first and
does not compile; HQQ and optimum-quanto wrap the same kernels less directly.

Which tensors: see `engine.quant_format` (linear weights + lm_head; never
embeddings, norms, biases, encoder or adapter).

Schemes per device:
- int8: symmetric per output row (torchao Int8Tensor) - CPU, CUDA, MPS.
- int4: asymmetric, groups of 128 inputs, tinygemm layout - CPU
  (Int4OpaqueTensor) and CUDA with compute capability >= 8 (tile-packed),
  for the MLP and lm_head; the attention projections get int8 (why:
  `engine.quant_format`). Elsewhere `check_supported` refuses in one line
  and names int8.

A quantized folder (`save_quantized`) keeps each quantized weight as its
plain component tensors (`<name>.qdata`, `<name>.scale`, ...) in the
safetensors shards, and `config.json` gains `"stepvoice_quantization"` with
the scheme and each subclass's non-tensor attributes, so it loads with no
quantization pass. int8 folders load on any device; int4 tensors are packed
for the kernel of the device type they were made on (recorded as `packed_for`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stepvoice.engine.errors import CheckpointError
from stepvoice.engine.quant_format import INT4_GROUP_SIZE, SCHEMES, is_quantized_linear, tensor_scheme

CONFIG_KEY = "stepvoice_quantization"
FORMAT_VERSION = 1
log = logging.getLogger(__name__)


def parse_scheme(scheme: str | None) -> str:
    value = (scheme or "none").lower()
    if value not in ("none",) + SCHEMES:
        raise CheckpointError(f"unknown quantization {scheme!r}; use none, int8 or int4")
    return value


def _int4_cpu_works() -> bool:
    """The CPU int4 matmul is in torch itself, but only in builds for some CPUs: try a tiny one."""
    try:
        w = torch.zeros(16, INT4_GROUP_SIZE, dtype=torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(w, 1)
        sz = torch.ones(1, 16, 2, dtype=torch.bfloat16)
        torch.ops.aten._weight_int4pack_mm_for_cpu(torch.zeros(1, INT4_GROUP_SIZE, dtype=torch.bfloat16),
                                                   packed, INT4_GROUP_SIZE, sz)
        return True
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def unsupported_reason(scheme: str, device: torch.device) -> str | None:
    """None when `scheme` runs on `device`, else why not (a phrase)."""
    if scheme in ("none", "int8"):
        return None
    if device.type == "cpu":
        return None if _int4_cpu_works() else "this CPU build of torch has no int4 matmul kernel"
    if device.type == "cuda":
        major = torch.cuda.get_device_capability(device)[0]
        return None if major >= 8 else f"the int4 kernel needs a GPU of compute capability 8.0+, this one is {major}.x"
    return f"torchao has no int4 kernel for {device.type}"


def check_supported(scheme: str, device: torch.device) -> None:
    """One clear line when the scheme cannot run on the device, naming what can."""
    reason = unsupported_reason(scheme, device)
    if reason:
        raise CheckpointError(f"--quantize {scheme} is not supported on {device.type}: {reason}; use --quantize int8")


def _config(scheme: str, device: torch.device) -> Any:
    if scheme == "int8":
        from torchao.quantization import Int8WeightOnlyConfig

        return Int8WeightOnlyConfig(set_inductor_config=False)
    if device.type == "cpu":
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        return PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, set_inductor_config=False)
    from torchao.quantization import Int4WeightOnlyConfig

    return Int4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, int4_packing_format="tile_packed_to_4d",
                                set_inductor_config=False)


def quantize_linear(linear: nn.Linear, scheme: str) -> None:
    """Replace `linear.weight` (already on its device) by its quantized form, in place."""
    from torchao.quantization import quantize_

    holder = nn.Sequential(linear)  # quantize_ walks children; a one-child wrapper targets just this layer
    quantize_(holder, _config(scheme, linear.weight.device))


def quantize_model(model: nn.Module, scheme: str) -> int:
    """Quantize every linear weight `engine.quant_format` names, in an already loaded model; returns the count."""
    scheme = parse_scheme(scheme)
    if scheme == "none":
        return 0
    check_supported(scheme, next(model.parameters()).device)
    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and is_quantized_linear(f"{name}.weight", tuple(module.weight.shape), scheme):
            quantize_linear(module, tensor_scheme(f"{name}.weight", scheme))
            count += 1
    return count


def maybe_quantize_loaded(model: nn.Module, name: str, scheme: str) -> None:
    """Called by the loader after each tensor lands: quantize its layer as soon as its weight is in."""
    if scheme == "none" or not name.endswith(".weight"):
        return
    module = model.get_submodule(name.rsplit(".", 1)[0])
    if isinstance(module, nn.Linear) and is_quantized_linear(name, tuple(module.weight.shape), scheme):
        quantize_linear(module, tensor_scheme(name, scheme))


# ---- quantized folders ------------------------------------------------------------------------

def _encode_attr(value: Any) -> Any:
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, (torch.Size, tuple, list)):
        return [int(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot store quantization attribute {value!r}")


def _decode_attr(value: Any) -> Any:
    if isinstance(value, dict) and "dtype" in value:
        return getattr(torch, value["dtype"])
    return value


def _subclasses() -> dict[str, type]:
    from torchao.prototype.quantization.int4 import Int4OpaqueTensor
    from torchao.quantization.quantize_.workflows.int4.int4_tile_packed_to_4d_tensor import Int4TilePackedTo4dTensor
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor

    return {c.__name__: c for c in (Int8Tensor, Int4OpaqueTensor, Int4TilePackedTo4dTensor)}


def flatten_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Plain tensors to save + per-weight metadata (subclass name and attributes) for config.json."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, value in model.state_dict().items():
        cls = type(value)
        if hasattr(cls, "tensor_data_names"):
            entry = {"class": cls.__name__, "tensors": [], "attrs": {}}
            for field in list(cls.tensor_data_names) + list(getattr(cls, "optional_tensor_data_names", [])):
                part = getattr(value, field, None)
                if part is not None:
                    tensors[f"{name}.{field}"] = part.detach().to("cpu").contiguous()
                    entry["tensors"].append(field)
            for field in list(cls.tensor_attribute_names) + list(getattr(cls, "optional_tensor_attribute_names", [])):
                entry["attrs"][field] = _encode_attr(getattr(value, field, None))
            meta[name] = entry
        else:
            tensors[name] = value.detach().to("cpu").contiguous()
    return tensors, meta


def read_quantization(config_json: dict[str, Any]) -> dict[str, Any] | None:
    """The `stepvoice_quantization` block of a config.json (None for a float checkpoint)."""
    block = config_json.get(CONFIG_KEY)
    if block is None:
        return None
    if not isinstance(block, dict) or block.get("scheme") not in SCHEMES or not isinstance(block.get("weights"), dict):
        raise CheckpointError(f"config.json: malformed {CONFIG_KEY} block")
    return block


def folder_quantization(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return read_quantization(data) if isinstance(data, dict) else None


def stored_names(block: dict[str, Any]) -> dict[str, list[str]]:
    """Module tensor name -> the shard tensor names that hold it (for quantized weights)."""
    return {name: [f"{name}.{f}" for f in entry["tensors"]] for name, entry in block["weights"].items()}


def check_folder_device(block: dict[str, Any], device: torch.device) -> None:
    packed = block.get("packed_for")
    if block["scheme"] == "int4" and packed and packed != device.type:
        raise CheckpointError(f"this int4 folder is packed for {packed}, not {device.type}: load the bf16 checkpoint "
                              f"with --quantize int4 on this device, or run `stepvoice model quantize` here")


def rebuild(entry: dict[str, Any], parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """A torchao weight from its saved components."""
    classes = _subclasses()
    cls = classes.get(entry.get("class"))
    if cls is None:
        raise CheckpointError(f"unknown quantized tensor class {entry.get('class')!r} in config.json")
    kwargs = {k: _decode_attr(v) for k, v in entry["attrs"].items()}
    if "shape" in kwargs and kwargs["shape"] is not None:
        kwargs["shape"] = torch.Size(kwargs["shape"])
    kwargs.update(parts)
    return cls(**kwargs)


def save_quantized(model: nn.Module, config_json: dict[str, Any], scheme: str, directory: Path,
                   n_shards: int = 4) -> list[str]:
    """Write `model` (already quantized) as a checkpoint folder that loads without a quantization pass."""
    from stepvoice.engine.weights import save_shards

    tensors, meta = flatten_state(model)
    device = next(model.parameters()).device
    float_dtype = next(p.dtype for p in model.parameters() if not hasattr(type(p.data), "tensor_data_names"))
    block = {"version": FORMAT_VERSION, "scheme": scheme, "packed_for": device.type if scheme == "int4" else None,
             "group_size": INT4_GROUP_SIZE if scheme == "int4" else None,
             "dtype": str(float_dtype).removeprefix("torch."), "weights": meta}
    directory.mkdir(parents=True, exist_ok=True)
    files = save_shards(tensors, directory, n_shards)
    out = dict(config_json)
    out[CONFIG_KEY] = block
    (directory / "config.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return files


def quantize_folder(src: Path, dst: Path, scheme: str, device: torch.device | str | None = None,
                    dtype: str | torch.dtype | None = "bfloat16") -> Path:
    """`stepvoice model quantize`: load `src` quantizing tensor by tensor, write `dst` with the same
    tokenizer, token2wav and generation files (hard links where the file system allows)."""
    import os
    import shutil

    from stepvoice.engine.checkpoint import load_model
    from stepvoice.engine.weights import INDEX_FILE

    src, dst = Path(src), Path(dst)
    scheme = parse_scheme(scheme)
    if scheme == "none":
        raise CheckpointError("model quantize needs --to int8 or --to int4")
    if dst.exists() and any(dst.iterdir()):
        raise CheckpointError(f"{dst} exists and is not empty: choose a new folder")
    if folder_quantization(src) is not None:
        raise CheckpointError(f"{src} is already quantized: start from the bf16 checkpoint")
    model = load_model(src, device, dtype, quantize=scheme, speech=False)
    config_json = json.loads((src / "config.json").read_text(encoding="utf-8"))
    n_shards = max(1, len({*json.loads((src / INDEX_FILE).read_text())["weight_map"].values()})) \
        if (src / INDEX_FILE).is_file() else 1
    save_quantized(model, config_json, scheme, dst, n_shards=n_shards)

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    for item in src.iterdir():
        if item.name in ("config.json", INDEX_FILE) or item.suffix == ".safetensors" or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, copy_function=link_or_copy)
        else:
            link_or_copy(str(item), str(dst / item.name))
    return dst
