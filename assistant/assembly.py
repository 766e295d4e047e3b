"""Build a Session's parts from the settings: backend, tools, retriever, voice bank, token2wav.

Used by `stepvoice ask` and `stepvoice run`. Each part is optional except the
backend: a part that cannot be had (no index yet, no token2wav folder) is
None, and `Parts.notes` says why in one line each so the CLI can tell the
user plainly instead of failing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from stepvoice.assistant.config import AssistantConfig
from stepvoice.engine.errors import StepvoiceError

log = logging.getLogger(__name__)


@dataclass
class Parts:
    backend: Any
    tools: Any = None
    retriever: Any = None
    voice_bank: Any = None
    token2wav: Any = None
    notes: list[str] = field(default_factory=list)  # why an optional part is missing


def load_parts(cfg: AssistantConfig, *, tools: bool = True, tools_modules: Sequence[str] = (),
               speech: bool = False, voices: bool = False, backend: Any = None) -> Parts:
    """The backend (from `cfg.model`), and the optional parts the settings ask for: token2wav and the
    voice bank when replies are spoken (`speech`) or a voice is named (`voices`)."""
    from stepvoice.assistant.paths import data_dir
    from stepvoice.engine.backends import load_backend

    if backend is None:
        kwargs: dict[str, Any] = {"dtype": cfg.dtype, "quantize": cfg.quantize, "compile": cfg.compile}
        if cfg.device:
            kwargs["device"] = cfg.device
        backend = load_backend(cfg.model, **kwargs)
        warm_up(backend)
    parts = Parts(backend)
    if tools and cfg.tool_loop.enabled:
        from stepvoice.tools import load_registry

        parts.tools = load_registry(cfg.tools, tools_modules=list(tools_modules))
    home = data_dir(cfg.data_dir)
    if cfg.rag.mode != "off":
        parts.retriever = open_retriever(home, parts.notes)
    if speech:
        parts.token2wav = open_token2wav(cfg, backend, parts.notes)
    if speech or voices or cfg.voice:  # the bank's first use installs and indexes its starter voices: only when it matters
        parts.voice_bank = open_voice_bank(home, parts.token2wav, parts.notes, cfg, parts.backend)
    return parts


def warm_up(backend: Any) -> None:
    """Compile the backend's decode step now, so the first reply does not pay for it (time logged)."""
    warm = getattr(backend, "warm_up", None)
    if warm is not None:
        seconds = warm()
        if seconds:
            log.warning("compiled the decode step in %.1f s (before the first reply)", seconds)


def open_retriever(home: Path, notes: list[str]) -> Any:
    """The data dir's index, or None when nothing was indexed yet (so no embedder is loaded for nothing)."""
    index = home / "index"
    if not index.is_dir() or not any(index.glob("text*")):
        return None
    try:
        from stepvoice.retrieval import Retriever

        return Retriever.open(home)
    except Exception as e:  # retrieval is an aid: say why it is off and go on
        notes.append(f"retrieval is off: {e}")
        return None


def token2wav_dir(cfg: AssistantConfig, backend: Any) -> Path | None:
    if cfg.token2wav:
        return Path(cfg.token2wav).expanduser()
    source = getattr(backend, "source", None) or getattr(backend, "checkpoint_dir", None)
    if source and Path(source).is_dir():
        return Path(source) / "token2wav"
    if cfg.model and Path(cfg.model).expanduser().is_dir():
        return Path(cfg.model).expanduser() / "token2wav"
    return None


def open_token2wav(cfg: AssistantConfig, backend: Any, notes: list[str]) -> Any:
    """Token2Wav from the settings' folder or the checkpoint's `token2wav/`, or None with a note."""
    folder = token2wav_dir(cfg, backend)
    if folder is None:
        notes.append("no speech audio: this model has no token2wav folder (set token2wav = DIR in the config)")
        return None
    if not folder.is_dir():
        notes.append(f"no speech audio: token2wav folder not found: {folder}")
        return None
    try:
        from stepvoice.engine.token2wav import Token2Wav
    except ImportError:
        notes.append("no speech audio: token2wav is not available in this installation")
        return None
    from stepvoice.engine.device import parse_device

    # beside the model (local engine); else the best device here (auto: cuda, mps, cpu)
    local = getattr(backend, "device", None)
    device = str(parse_device(cfg.device) if cfg.device or local is None else local)
    return Token2Wav.from_dir(folder, device=device, dtype=cfg.t2w_dtype, n_timesteps=cfg.t2w_steps)


def open_voice_bank(home: Path, token2wav: Any, notes: list[str], cfg: AssistantConfig | None = None,
                    backend: Any = None) -> Any:
    """The data dir's voice bank (voices prepared with `token2wav`), or None when voice_bank is missing."""
    try:
        from stepvoice.voice_bank import VoiceBank, prompt_key_for
    except ImportError:
        return None
    prepare = token2wav.prepare_voice if token2wav is not None else None
    folder = token2wav_dir(cfg, backend) if token2wav is not None and cfg is not None else None
    try:
        return VoiceBank.open(home, prepare=prepare, prompt_key=prompt_key_for(folder))
    except StepvoiceError as e:
        notes.append(f"voice bank unavailable: {e}")
        return None
