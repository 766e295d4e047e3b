"""Before an event loop starts serving: remove what would stall it later.

Two stalls that no `asyncio.to_thread` avoids, because they hold the GIL
(every thread, the loop's included, waits for them):

- a first import of a large C extension in a worker thread: the voice
  preparation's `onnxruntime` (~120 ms) and `kaldi_native_fbank` (~50 ms) were
  imported by the first cold voice, mid-conversation (measured with
  `stepvoice serve`, fake `small` token2wav, 2 loaded cores);
- a full garbage collection walking everything loaded at start-up (torch,
  the model, token2wav, tools: ~170k objects): 100-400 ms with the loop
  stopped, a few times a minute while replies allocate. `gc.freeze()` moves
  the start-up heap out of the collector's sight; only objects created while
  serving are walked afterwards.

With `vad=True` the Silero model that every connection's VAD shares is
loaded too. Call `prepare_loop()` once, after the model and token2wav are loaded and
right before `asyncio.run(...)` (it is not for use inside a running loop: the
collection before the freeze takes a few hundred ms).
"""
from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
import time

log = logging.getLogger(__name__)

# C extensions that worker threads import on first use while a loop runs
# (engine/token2wav/voice.py: onnxruntime; engine/token2wav/features.py: kaldi_native_fbank;
# assistant/vad.py: onnxruntime).
SPEECH_MODULES = ("onnxruntime", "kaldi_native_fbank")
VAD_MODULES = ("onnxruntime",)


def preload(modules: tuple[str, ...]) -> list[str]:
    """Import `modules` now (those not installed are skipped: their users say so when needed)."""
    loaded = []
    for name in dict.fromkeys(modules):
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # a broken install: its first user reports it with context
            log.debug("preloading %s failed: %s", name, e)
            continue
        loaded.append(name)
    return loaded


def freeze_heap() -> int:
    """Collect once, then keep everything alive now out of later collections; returns the frozen count."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def prepare_loop(*, speech: bool = False, vad: bool = False) -> None:
    """Preload what the loop's worker threads will import, then freeze the start-up heap."""
    start = time.perf_counter()
    modules = (SPEECH_MODULES if speech else ()) + (VAD_MODULES if vad else ())
    loaded = preload(modules)
    if vad:
        _load_vad_model()
    frozen = freeze_heap()
    log.debug("loop prepared in %.2f s: preloaded %s, %d objects frozen", time.perf_counter() - start,
              ", ".join(loaded) or "nothing", frozen)


def _load_vad_model() -> None:
    """Load the Silero model every stream shares (assistant/vad.py), before the first connection."""
    try:
        from stepvoice.assistant.vad import SileroVAD

        SileroVAD()
    except Exception as e:  # not installed or broken: the first user of the VAD reports it
        log.debug("preloading the VAD model failed: %s", e)


__all__ = ["prepare_loop", "preload", "freeze_heap", "SPEECH_MODULES", "VAD_MODULES"]
