"""Which device to run on and how much memory it has free.

`--device auto` means CUDA, else Apple's MPS, else the CPU. Free memory is
what the planner compares the model's needs against; `STEPVOICE_MEMORY_LIMIT`
(bytes, or "12GB", "800MB") caps it, so a user can keep room for other
programs and tests can pretend a small device without owning one.
"""
from __future__ import annotations

import os
import re

import torch

from stepvoice.engine.errors import ConfigError

MEMORY_LIMIT_ENV = "STEPVOICE_MEMORY_LIMIT"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def default_device() -> torch.device:
    """CUDA, then MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def parse_device(device: str | torch.device | None) -> torch.device:
    """A torch.device from a flag value; None or "auto" picks the best available."""
    if device is None or device == "auto":
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but no CUDA GPU is available (try --device auto)")
    if dev.type == "mps" and not mps_available():
        raise ConfigError("device mps asked for, but MPS is not available (try --device auto)")
    return dev


def parse_bytes(text: str) -> int:
    """"12GB", "800 MiB", "1e9" -> bytes (ConfigError on anything else)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS:
        raise ConfigError(f"{MEMORY_LIMIT_ENV}: cannot read {text!r} as a size (e.g. 12GB, 800MB)")
    return int(float(m.group(1)) * _UNITS[unit])


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other POSIX systems: free pages (an underestimate on macOS, never an overestimate)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give (None: unknown), capped by STEPVOICE_MEMORY_LIMIT."""
    free: int | None
    if device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
    elif device.type == "mps":
        # Unified memory: the driver's recommended working set minus what is in use.
        free = int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    elif device.type == "cpu":
        free = _host_available()
    else:
        free = None
    limit = os.environ.get(MEMORY_LIMIT_ENV)
    if limit:
        cap = parse_bytes(limit)
        free = cap if free is None else min(free, cap)
    return free


def describe(device: torch.device) -> str:
    """"the GPU", "the Mac GPU", "this machine" - for one-line messages."""
    return {"cuda": "the GPU", "mps": "the Mac GPU"}.get(device.type, "this machine")
