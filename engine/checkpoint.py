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


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def parse_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but no CUDA GPU is available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device mps asked for, but MPS is not available")
    return dev


def load_model(directory: str | os.PathLike, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None):
    """A ready StepAudio2 in eval mode, weights read shard by shard into `dtype` on `device`."""
    from stepvoice.engine.weights import load_into

    directory = Path(directory)
    config = read_config(directory)
    dev = parse_device(device)
    model = build_meta(config)
    n_params = sum(p.numel() for p in model.parameters())
    torch_dtype = parse_dtype(dtype, dev, n_params)
    load_into(model, directory, dev, torch_dtype)
    model.reset_rotary(dev)
    return model.eval()


from stepvoice.engine.checkpoint_check import CheckReport, check  # noqa: E402  (re-exported)
from stepvoice.engine.checkpoint_fake import fake  # noqa: E402

__all__ = ["DEFAULT_MODEL", "resolve", "download", "read_config", "params", "build_meta", "load_model",
           "check", "CheckReport", "fake", "default_device", "parse_dtype", "parse_device"]
