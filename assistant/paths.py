"""Where stepvoice keeps its files: --data-dir, then STEPVOICE_HOME, then the platform's user dirs."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "stepvoice"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data dir (indexes, voices, logs, transcripts); created if missing."""
    raw = override or os.environ.get("STEPVOICE_HOME") or platformdirs.user_data_dir(APP)
    path = Path(raw).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_file(override: str | os.PathLike | None = None) -> Path:
    """The TOML config: --config, then STEPVOICE_CONFIG, then the platform config dir (may not exist)."""
    raw = override or os.environ.get("STEPVOICE_CONFIG")
    if raw:
        return Path(raw).expanduser()
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"
