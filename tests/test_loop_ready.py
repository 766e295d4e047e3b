"""prepare_loop (run by `serve` before its loop starts): the voice/VAD C extensions are imported
up front and the start-up heap is out of the collector's sight, so neither a first import in a
worker thread nor a full collection of the model heap holds the GIL while the loop serves."""
from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, sys
import torch  # a heap the size of a loaded server's (~100k objects)
from stepvoice.assistant.loop_ready import prepare_loop
before = {m: m in sys.modules for m in ("onnxruntime", "kaldi_native_fbank")}
prepare_loop(speech=SPEECH, vad=False)
after = {m: m in sys.modules for m in ("onnxruntime", "kaldi_native_fbank")}
print(json.dumps({"before": before, "after": after, "frozen": gc.get_freeze_count(),
                  "tracked": len(gc.get_objects())}))
"""


def probe(speech: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.replace("SPEECH", str(speech))], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_speech_extensions_are_imported_and_the_startup_heap_frozen():
    r = probe(speech=True)
    assert r["before"] == {"onnxruntime": False, "kaldi_native_fbank": False}  # lazily imported otherwise
    assert r["after"] == {"onnxruntime": True, "kaldi_native_fbank": True}
    # what a full collection still walks is a small fraction of what is alive
    assert r["frozen"] > 50_000 and r["tracked"] < r["frozen"] // 10, r


def test_vad_model_loaded_once_for_all_streams():
    code = ("from stepvoice.assistant.loop_ready import prepare_loop; from stepvoice.assistant import vad; "
            "prepare_loop(vad=True); n = len(vad._SESSIONS); v = vad.SileroVAD(); "
            "print(n, len(vad._SESSIONS), v._session is next(iter(vad._SESSIONS.values())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split() == ["1", "1", "True"]


def test_without_speech_nothing_extra_is_imported():
    r = probe(speech=False)
    assert r["after"] == {"onnxruntime": False, "kaldi_native_fbank": False}
    assert r["frozen"] > 50_000
