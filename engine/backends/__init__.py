"""Backends behind one interface; `load_backend(spec)` picks one from a model spec."""
from __future__ import annotations

from stepvoice.engine.backends.base import Backend

DEFAULT_MODEL = "stepfun-ai/Step-Audio-2-mini"


def load_backend(spec: str | None = None, *, device: str | None = None, dtype: str | None = None,
                 quantize: str | None = "none", compile: str | bool | None = "auto") -> Backend:
    """A model spec is `scripted:FILE.yaml`, `vllm+http://HOST:PORT`, a local
    checkpoint folder, or a hub id (downloaded on first use). `device` None or
    "auto": cuda, then mps, then cpu; `quantize`/`compile` apply to local models."""
    spec = spec or DEFAULT_MODEL
    if spec.startswith("scripted:"):
        from stepvoice.engine.backends.scripted import ScriptedBackend

        return ScriptedBackend.from_file(spec[len("scripted:"):])
    if spec.startswith(("vllm+http://", "vllm+https://")):
        from stepvoice.engine.backends.vllm import VLLMBackend

        return VLLMBackend(spec[len("vllm+"):])
    from stepvoice.engine.backends.local import LocalBackend

    return LocalBackend.from_spec(spec, device=device, dtype=dtype, quantize=quantize, compile=compile)


__all__ = ["Backend", "load_backend", "DEFAULT_MODEL"]
