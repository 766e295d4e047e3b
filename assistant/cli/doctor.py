"""`stepvoice doctor`: what this machine has, what the model needs, what is missing, where files live.

Reads only: no model is loaded and nothing is downloaded (the memory plan builds the architecture on
the meta device: a few seconds).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

GB = 1e9
# The official config.json of Step-Audio 2 mini, shipped with the package so the plan needs no download
# (a copy of tests/fixtures/step_audio_2_mini_config.json; tests/test_doctor.py keeps them equal).
DEBS = {"libportaudio2": "sound devices", "libsndfile1": "audio files", "espeak-ng": "test speech",
        "sox": "test audio"}


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("doctor", parents=[common],
                              help="check this machine: devices, memory per precision, audio, optional parts, files")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=doctor)


def official_config() -> Any:
    import stepvoice
    from stepvoice.engine.config import StepAudio2Config

    return StepAudio2Config.from_file(Path(stepvoice.__file__).parent / "step_audio_2_mini_config.json")


def needs(device_names: list[str]) -> dict[str, dict[str, Any]]:
    """Per precision (engine.plan, as `stepvoice model plan`): weights and total bytes on the CPU, and the
    devices whose free memory holds it now. One plan per float dtype and device: its `suggestions` give
    the totals of every quantization scheme."""
    import torch

    from stepvoice.engine.plan import make_plan

    config = official_config()
    out: dict[str, dict[str, Any]] = {}
    for dtype in ("float32", "bfloat16"):
        plans = {name: make_plan(config, torch.device(name), getattr(torch, dtype)) for name in device_names}
        cpu = plans["cpu"]
        fixed = cpu.total_bytes - cpu.weights_bytes  # token2wav, KV cache, working memory
        for scheme in ("none", "int8", "int4") if dtype == "bfloat16" else ("none",):
            total = cpu.suggestions[scheme]
            fits = [name for name, p in plans.items() if p.free_bytes is not None and p.suggestions[scheme] <= p.free_bytes]
            gpu = {name: p.suggestions[scheme] for name, p in plans.items() if name != "cpu"}
            out[dtype if scheme == "none" else scheme] = {"weights": total - fixed, "total": total, "fits": fits,
                                                          "total_on": gpu}
    return out


def devices() -> list[dict[str, Any]]:
    out = [{"name": "cpu", "what": f"{os.cpu_count()} cores", **_ram()}]
    try:
        import torch
    except ImportError:
        return out
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            out.append({"name": f"cuda:{i}", "what": torch.cuda.get_device_name(i), "total": total, "free": free})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append({"name": "mps", "what": "Apple GPU (shares the RAM)", "total": None, "free": None})
    return out


def _ram() -> dict[str, int | None]:
    info: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
        return {"total": info.get("MemTotal"), "free": info.get("MemAvailable")}
    except (OSError, ValueError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            return {"total": total, "free": None}
        except (ValueError, OSError, AttributeError):
            return {"total": None, "free": None}


def audio_devices() -> dict[str, Any]:
    try:
        from stepvoice.assistant.audio_io.devices import find_device
    except ImportError as e:
        return {"error": str(e)}
    out: dict[str, Any] = {}
    for kind in ("input", "output"):
        try:
            d = find_device(None, kind)
            out[kind] = d.name
        except Exception as e:  # noqa: BLE001  (any failure is the answer: no usable device)
            out[kind] = None
            out[f"{kind}_problem"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return out


def optional_parts() -> list[dict[str, Any]]:
    def spec(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    parts = [
        {"part": "speaker encoder (voice search by sound)", "present": spec("resemblyzer"),
         "fix": "pip install --no-deps resemblyzer"},
        {"part": "default voice clip", "present": spec("s3tokenizer"), "fix": "pip install --no-deps s3tokenizer"},
        {"part": "echo cancellation (chat --echo-cancel)", "present": spec("livekit"),
         "fix": "pip install 'stepvoice[aec]'"},
    ]
    for deb, why in DEBS.items():
        parts.append({"part": f"{deb} ({why})", "present": _deb_present(deb), "fix": f"sudo apt-get install {deb}"})
    return parts


def _deb_present(name: str) -> bool:
    if shutil.which(name):
        return True
    if name.startswith("lib"):
        import ctypes.util

        return ctypes.util.find_library(name.removeprefix("lib").rstrip("0123456789")) is not None
    return False


def places(args: argparse.Namespace) -> list[dict[str, Any]]:
    from stepvoice.assistant.paths import config_file, data_dir

    out = [{"what": "config", "path": str(config_file(args.config_file)),
            "bytes": _size(config_file(args.config_file))}]
    home = data_dir(args.data_dir)
    for what, sub in (("data", ""), ("index", "index"), ("voices", "voices"), ("conversations", "conversations"),
                      ("logs", "logs")):
        path = home / sub if sub else home
        out.append({"what": what, "path": str(path), "bytes": _size(path)})
    out.append({"what": "models", "path": str(_hub_cache()), "bytes": _size(_hub_cache())})
    return out


def _hub_cache() -> Path:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return Path(HF_HUB_CACHE)
    except ImportError:
        return Path.home() / ".cache" / "huggingface" / "hub"


def _size(path: Path) -> int | None:
    if not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).stat().st_size
            except OSError:
                pass
    return total


def _fmt(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def report(args: argparse.Namespace) -> dict[str, Any]:
    from stepvoice import __version__

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    devs = devices()
    need = needs([d["name"] for d in devs if d["name"] != "mps"])
    params = official_config_params()
    try:  # how token2wav would run here (engine.token2wav.precision; no weights read)
        from stepvoice.engine.token2wav.precision import token2wav_precision

        t2w = token2wav_precision(device=devs[1]["name"] if len(devs) > 1 else "cpu", requested="auto")
    except Exception as e:  # noqa: BLE001  (an answer, not a failure of doctor)
        t2w = {"error": str(e)}
    return {"stepvoice": __version__, "token2wav": t2w, "python": platform.python_version(), "torch": torch_version,
            "platform": f"{platform.system()} {platform.machine()}", "devices": devs, "model_needs": need,
            "model_params": params, "audio": audio_devices(), "optional": optional_parts(),
            "files": places(args)}


def official_config_params() -> int:
    from stepvoice.engine.checkpoint import params

    return sum(math.prod(shape) for _, shape in params(official_config()))


def doctor(args: argparse.Namespace) -> int:
    import json

    r = report(args)
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
        return 0
    w = sys.stdout.write
    w(f"stepvoice {r['stepvoice']}  (python {r['python']}, torch {r['torch'] or 'NOT INSTALLED'}, {r['platform']})\n")
    w("\ndevices\n")
    for d in r["devices"]:
        w(f"  {d['name']:<8} {d['what']:<28} {_fmt(d.get('total'))} total, {_fmt(d.get('free'))} free\n")
    if len(r["devices"]) == 1:
        w("  no GPU: the model runs on the CPU, far slower than real time; "
          "use a GPU or --model vllm+http://HOST:PORT for real use\n")
    w(f"\nStep-Audio 2 mini needs ({r['model_params'] / 1e9:.2f} B parameters; total = weights + token2wav + "
      f"4k tokens of KV cache + working memory; `stepvoice model plan` shows the parts)\n")
    w(f"  {'precision':<10} {'weights':>9} {'total':>9}  fits now on\n")
    for precision, n in r["model_needs"].items():
        w(f"  {precision:<10} {_fmt(n['weights']):>9} {_fmt(n['total']):>9}  {', '.join(n['fits']) or '-'}\n")
    t = r["token2wav"]
    if "error" not in t:
        w(f"  token2wav on {t.get('device')}: flow {t.get('flow')}, vocoder {t.get('vocoder')} ({t.get('reason')})\n")
    w("\naudio devices\n")
    a = r["audio"]
    for kind in ("input", "output"):
        if a.get(kind):
            w(f"  {kind:<7} {a[kind]}\n")
        else:
            w(f"  {kind:<7} none ({a.get(f'{kind}_problem', a.get('error', ''))})\n")
    if not a.get("input"):
        w("          without a microphone: `stepvoice chat --text`, or `chat --input-file FILE.wav`\n")
    w("\noptional parts\n")
    for p in r["optional"]:
        state = "ok" if p["present"] else f"missing: {p['fix']}"
        w(f"  {p['part']:<42} {state}\n")
    w("\nfiles\n")
    for f in r["files"]:
        size = _fmt(f["bytes"]) if f["bytes"] is not None else "(absent)"
        w(f"  {f['what']:<14} {f['path']}  {size}\n")
    return 0
