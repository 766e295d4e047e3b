"""`stepvoice model download|fake|check|params|plan|quantize`: get, fake, verify, describe, plan and quantize checkpoints."""
from __future__ import annotations

import argparse
import json
import math
import sys


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("model", help="download, list, remove, fake, check or describe a checkpoint")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    d = sub.add_parser("download", parents=[common], help="download a checkpoint from the Hugging Face hub")
    d.add_argument("id", nargs="?", default=None, help="hub id (default stepfun-ai/Step-Audio-2-mini)")
    d.add_argument("--dir", default=None, help="folder to download into (default: the hub cache)")
    d.set_defaults(handler=cmd_download)

    f = sub.add_parser("fake", parents=[common], help="write a random-weight checkpoint in the official layout")
    f.add_argument("dir", help="folder to write")
    f.add_argument("--size", choices=["tiny", "small"], default="tiny")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(handler=cmd_fake)

    c = sub.add_parser("check", parents=[common], help="check a checkpoint folder (files, tensors, tokens)")
    c.add_argument("dir", help="checkpoint folder")
    c.set_defaults(handler=cmd_check)

    from stepvoice.assistant.cli.model_cache import register_cache  # list, rm

    register_cache(sub, common)

    pp = sub.add_parser("params", parents=[common], help="list parameter names and shapes of an architecture")
    pp.add_argument("dir", nargs="?", default=None, help="checkpoint folder (reads its config.json)")
    pp.add_argument("--json", action="store_true", help="print one JSON object")
    # `--config` is taken by the common flags (TOML); the model config file is --config in the contract,
    # so it is read from args.config_file when DIR is absent.
    pp.set_defaults(handler=cmd_params)

    pl = sub.add_parser("plan", parents=[common], help="memory needed by part against what the device has free")
    pl.add_argument("dir", nargs="?", default=None, help="checkpoint folder (or --model SPEC / --config CONFIG.json)")
    pl.add_argument("--model", default=None, help="model spec: a checkpoint folder or a downloaded hub id")
    pl.add_argument("--quantize", choices=["none", "int8", "int4"], default=None, help="weight scheme to plan for")
    pl.add_argument("--context", type=int, default=None, help="tokens of KV cache to plan for (default 4096)")
    pl.add_argument("--no-speech", action="store_true", help="leave token2wav out (text replies only)")
    pl.add_argument("--json", action="store_true", help="print one JSON object")
    pl.set_defaults(handler=cmd_plan)

    q = sub.add_parser("quantize", parents=[common], help="write an int8/int4 copy of a checkpoint that loads directly")
    q.add_argument("src", help="bf16 checkpoint folder (or hub id)")
    q.add_argument("dst", help="new folder to write")
    q.add_argument("--to", dest="scheme", choices=["int8", "int4"], required=True, help="weight scheme")
    q.set_defaults(handler=cmd_quantize)


def cmd_download(args: argparse.Namespace) -> int:
    from stepvoice.engine.checkpoint import DEFAULT_MODEL, download

    path = download(args.id or DEFAULT_MODEL, args.dir)
    print(path)
    return 0


def cmd_fake(args: argparse.Namespace) -> int:
    from stepvoice.engine.checkpoint import check, fake

    path = fake(args.dir, args.size, seed=args.seed)
    report = check(path)
    print(f"wrote a fake {args.size} checkpoint to {path} ({report.n_params:,} parameters)")
    return 0 if report.ok else _fail(report)


def cmd_check(args: argparse.Namespace) -> int:
    from stepvoice.engine.checkpoint import check

    report = check(args.dir)
    if report.ok:
        print(report)
        return 0
    return _fail(report)


def _fail(report) -> int:
    print(report)
    first = report.problems[0] if report.problems else "unknown problem"
    print(f"error: checkpoint check failed: {first}", file=sys.stderr)
    return 1


def cmd_params(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stepvoice.engine.checkpoint import params
    from stepvoice.engine.config import StepAudio2Config
    from stepvoice.engine.errors import ConfigError

    source = args.dir or args.config_file
    if not source:
        raise ConfigError("give a checkpoint folder or --config CONFIG.json")
    path = Path(source)
    config = StepAudio2Config.from_file(path / "config.json" if path.is_dir() else path)
    rows = params(config)
    total = sum(math.prod(shape) for _, shape in rows)
    if args.json:
        print(json.dumps({"params": [{"name": n, "shape": list(s)} for n, s in rows], "total": total}))
        return 0
    width = max(len(n) for n, _ in rows)
    for name, shape in rows:
        print(f"{name:<{width}}  {'x'.join(map(str, shape)):>16}  {math.prod(shape):>13,}")
    print(f"total: {total:,} parameters ({total / 1e9:.2f} B)")
    return 0


def _config_source(args: argparse.Namespace):
    """(StepAudio2Config, checkpoint folder or None) from DIR, --model or --config."""
    from pathlib import Path

    from stepvoice.engine.checkpoint import read_config, resolve
    from stepvoice.engine.config import StepAudio2Config
    from stepvoice.engine.errors import ConfigError

    spec = args.dir or getattr(args, "model", None)
    if spec:
        folder = resolve(spec)
        return read_config(folder), folder
    if args.config_file:
        path = Path(args.config_file)
        return StepAudio2Config.from_file(path / "config.json" if path.is_dir() else path), None
    raise ConfigError("give a checkpoint folder, --model SPEC or --config CONFIG.json")


def cmd_plan(args: argparse.Namespace) -> int:
    from stepvoice.engine.checkpoint import params, parse_dtype
    from stepvoice.engine.device import parse_device
    from stepvoice.engine.plan import DEFAULT_CONTEXT_TOKENS, make_plan
    from stepvoice.engine.quantize import parse_scheme, read_quantization

    config, folder = _config_source(args)
    device = parse_device(args.device)
    stored = read_quantization(config.extra)
    scheme = parse_scheme(args.quantize or (stored["scheme"] if stored else "none"))
    n_params = sum(math.prod(shape) for _, shape in params(config))
    dtype = parse_dtype(args.dtype or (stored or {}).get("dtype"), device, n_params)
    plan = make_plan(config, device, dtype, scheme, context_tokens=args.context or DEFAULT_CONTEXT_TOKENS,
                     token2wav=folder / "token2wav" if folder else None, speech=not args.no_speech)
    print(json.dumps(plan.to_dict()) if args.json else plan.table())
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    import time

    from stepvoice.engine.checkpoint import resolve
    from stepvoice.engine.quantize import quantize_folder

    start = time.perf_counter()
    dst = quantize_folder(resolve(args.src), args.dst, args.scheme, args.device, args.dtype or "bfloat16")
    size = sum(f.stat().st_size for f in dst.glob("*.safetensors"))
    print(f"wrote {args.scheme} weights to {dst} ({size / 1e9:.2f} GB of shards, {time.perf_counter() - start:.0f} s)")
    return 0
