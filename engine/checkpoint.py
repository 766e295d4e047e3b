"""Find, download and load Step-Audio 2 checkpoints.

A model spec is a local folder, a hub id (downloaded through huggingface_hub,
cached), or `scripted:FILE.yaml`. `check` and `fake` live in
`engine.checkpoint_check` / `engine.checkpoint_fake` and are re-exported here.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from stepvoice.engine.config import StepAudio2Config
from stepvoice.engine.device import default_device, parse_device  # noqa: F401  (re-exported)
from stepvoice.engine.errors import CheckpointError, ConfigError

DEFAULT_MODEL = "stepfun-ai/Step-Audio-2-mini"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
log = logging.getLogger(__name__)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not spec.startswith((".", "~"))
        and not os.path.isabs(spec)
        and "\\" not in spec
    )


def resolve(spec: str | os.PathLike | None = None) -> Path:
    """The local path a model spec names: a folder, the YAML of `scripted:FILE`,
    or the snapshot folder of a hub id (downloaded on first use)."""
    spec = str(spec) if spec is not None else DEFAULT_MODEL
    if spec.startswith("scripted:"):
        path = Path(spec[len("scripted:"):]).expanduser()
        if not path.is_file():
            raise CheckpointError(f"scripted model file not found: {path}")
        return path
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path} is not a checkpoint folder")
        return path
    if not _looks_like_hub_id(spec):
        raise CheckpointError(f"checkpoint folder not found: {path}")
    try:
        return download(spec)
    except CheckpointError as e:
        if path.parent.is_dir() and str(path.parent) not in ("", "."):
            # "models/ckpt" with a local models/ folder was most likely meant as a path.
            raise CheckpointError(f"checkpoint folder not found: {path} (and as a hub id: {e})") from None
        raise


def download(repo_id: str = DEFAULT_MODEL, directory: str | os.PathLike | None = None) -> Path:
    """Fetch a hub checkpoint (progress bars on stderr); reuse the cache when present."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency
        raise CheckpointError("huggingface_hub is not installed: pip install huggingface_hub") from None
    kwargs = {"repo_id": repo_id}
    if directory is not None:
        kwargs["local_dir"] = str(directory)
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except Exception:
        pass  # not cached yet: download below
    try:
        return Path(snapshot_download(**kwargs))
    except Exception as e:
        name = type(e).__name__
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "Connect" in name or "Offline" in name or "LocalEntry" in name
        hint = (
            "no network access (or HF_HUB_OFFLINE=1): download it on a connected machine with "
            f"`stepvoice model download {repo_id} --dir DIR`, copy DIR here and pass --model DIR"
            if offline
            else f"{name}: {str(e).strip().splitlines()[0] if str(e).strip() else 'download failed'}"
        )
        raise CheckpointError(f"cannot download {repo_id}: {hint}") from None


def read_config(directory: Path) -> StepAudio2Config:
    """The config of a checkpoint folder (CheckpointError when config.json is absent)."""
    file = Path(directory) / "config.json"
    if not file.is_file():
        raise CheckpointError(f"no config.json in {directory}")
    try:
        return StepAudio2Config.from_file(file)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def build_meta(config: StepAudio2Config):
    """The full architecture with no storage (meta device): names and shapes only."""
    from stepvoice.engine.model import StepAudio2

    with torch.device("meta"):
        return StepAudio2(config)


def params(config: StepAudio2Config) -> list[tuple[str, tuple[int, ...]]]:
    """(checkpoint key, shape) of every tensor of the architecture, in module order."""
    return [(k, tuple(v.shape)) for k, v in build_meta(config).state_dict(keep_vars=True).items()]


def parse_dtype(dtype: str | torch.dtype | None, device: torch.device, n_params: int = 0) -> torch.dtype:
    """Explicit dtype, or: bf16 on CUDA, fp16 on MPS, fp32 on CPU for small models
    (bf16 for big ones, which would not fit in memory as fp32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype:
        try:
            return DTYPES[str(dtype)]
        except KeyError:
            raise ConfigError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16") from None
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "mps":
        return torch.float16
    return torch.float32 if n_params < 2_000_000_000 else torch.bfloat16


def load_model(directory: str | os.PathLike, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None, *, quantize: str | None = "none",
               check_memory: bool = True, speech: bool = True):
    """A ready StepAudio2 in eval mode, weights read shard by shard into `dtype` on `device`.

    `quantize` int8/int4 quantizes the LLM's linear layers while loading; a folder
    written by `stepvoice model quantize` loads as it is. With `check_memory`, a
    model that would not fit the device's free memory is refused before any shard
    is read, with one line naming a setting that fits (see engine.plan).
    """
    from stepvoice.engine.plan import check_fits, make_plan
    from stepvoice.engine.quantize import check_folder_device, check_supported, parse_scheme, read_quantization
    from stepvoice.engine.weights import load_into

    directory = Path(directory)
    config = read_config(directory)
    dev = parse_device(device)
    scheme = parse_scheme(quantize)
    stored = read_quantization(config.extra)
    if stored is not None:
        if scheme not in ("none", stored["scheme"]):
            raise CheckpointError(f"{directory} is already quantized to {stored['scheme']}; "
                                  f"for {scheme} start from the bf16 checkpoint")
        scheme = stored["scheme"]
        check_folder_device(stored, dev)
        if dtype is None and stored.get("dtype"):
            dtype = stored["dtype"]
    check_supported(scheme, dev)
    model = build_meta(config)
    n_params = sum(p.numel() for p in model.parameters())
    torch_dtype = parse_dtype(dtype, dev, n_params)
    if check_memory:
        check_fits(make_plan(config, dev, torch_dtype, scheme, token2wav=directory / "token2wav", speech=speech))
    load_into(model, directory, dev, torch_dtype, quantize="none" if stored else scheme, stored=stored)
    model.reset_rotary(dev)
    model.quantization = scheme  # what `model check`, plans and benches report
    return model.eval()


from stepvoice.engine.checkpoint_check import CheckReport, check  # noqa: E402  (re-exported)
from stepvoice.engine.checkpoint_fake import fake  # noqa: E402

__all__ = ["DEFAULT_MODEL", "resolve", "download", "read_config", "params", "build_meta", "load_model",
           "check", "CheckReport", "fake", "default_device", "parse_dtype", "parse_device"]
