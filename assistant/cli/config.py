"""`stepvoice config show`: the effective settings (file + STEPVOICE_* env + flags) and where they came from."""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("config", help="show the effective settings")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    show = sub.add_parser("show", parents=[common], help="print the settings in effect (TOML, or --json)")
    show.add_argument("--json", action="store_true", help="one JSON object instead of TOML")
    show.set_defaults(handler=show_config)
    path = sub.add_parser("path", parents=[common], help="print the config file that is read")
    path.set_defaults(handler=show_path)


def common_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The common flags (and the engine flags where a command has them) as config overrides (None = not given)."""
    return {"device": getattr(args, "device", None), "dtype": getattr(args, "dtype", None),
            "data_dir": getattr(args, "data_dir", None), "compile": getattr(args, "compile", None),
            "quantize": getattr(args, "quantize", None),
            # #12: conversation latency and style (flags only where a command has them)
            "prefix_cache": False if getattr(args, "no_prefix_cache", False) else None,
            "speculate": False if getattr(args, "no_speculate", False) else None,
            "style": getattr(args, "style", None),
            "t2w_dtype": getattr(args, "t2w_dtype", None), "t2w_steps": getattr(args, "t2w_steps", None)}


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """--compile / --quantize for the commands that load a local model (ask, chat, run, serve)."""
    parser.add_argument("--compile", choices=["auto", "on", "off"], default=None,
                        help="compile the decode step (auto: on CUDA; config key `compile`)")
    parser.add_argument("--quantize", choices=["none", "int8", "int4"], default=None,
                        help="weight-only int8/int4 for the LLM's linear layers (config key `quantize`)")
    parser.add_argument("--no-prefix-cache", action="store_true",
                        help="prefill the whole conversation every turn (config `prefix_cache = false`; for comparison)")
    parser.add_argument("--no-speculate", action="store_true",
                        help="voice: wait for the endpoint before starting the reply (config `speculate = false`)")
    parser.add_argument("--style", default=None,
                        help="how the assistant speaks: slow, fast, whisper, excited, sad, ... or free text (config `style`)")
    parser.add_argument("--t2w-dtype", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                        help="token2wav flow precision (auto: per device; config `t2w_dtype`)")
    parser.add_argument("--t2w-steps", type=int, default=None,
                        help="token2wav Euler steps (default 10; fewer is faster; config `t2w_steps`)")


def show_config(args: argparse.Namespace) -> int:
    import json

    from stepvoice.assistant.config import load_config, to_toml
    from stepvoice.assistant.paths import config_file

    cfg = load_config(args.config_file, common_overrides(args))
    file = config_file(args.config_file)
    if args.json:
        print(json.dumps({"config_file": str(file), "config_file_exists": file.is_file(), "settings": cfg.to_dict()},
                         ensure_ascii=False, indent=2))
    else:
        state = "" if file.is_file() else " (not present: defaults)"
        print(f"# config file: {file}{state}")
        print(to_toml(cfg), end="")
    return 0


def show_path(args: argparse.Namespace) -> int:
    from stepvoice.assistant.paths import config_file

    print(config_file(args.config_file))
    return 0
