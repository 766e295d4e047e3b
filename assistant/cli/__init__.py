"""`stepvoice` command line: one module per command group, each with `register(subparsers, common)`.

Command modules keep heavy imports inside their handlers so `stepvoice --help`
stays fast. A handler returns an exit status; a `StepvoiceError` (or any
other exception) becomes one line on stderr and a non-zero status.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

# Command groups, in help order. Each is assistant.cli.<name> with register().
COMMAND_MODULES = ("model", "ask", "chat", "run", "voices", "index", "tools", "serve", "eval", "config", "doctor")


def common_parser() -> argparse.ArgumentParser:
    """Flags every command takes, before or after the command name (`build_parser` makes that work)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common")
    g.add_argument("--data-dir", default=None, help="where indexes, voices and logs live (env STEPVOICE_HOME)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    g.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="weights dtype")
    g.add_argument("--config", dest="config_file", default=None, help="TOML config file (env STEPVOICE_CONFIG)")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return p


def build_parser() -> argparse.ArgumentParser:
    from stepvoice import __version__

    common = common_parser()
    # The common flags are accepted before the command too (`stepvoice --device cpu ask ...`). They are
    # SUPPRESSed at parse time so the subcommand's unset flags do not overwrite ones given before it;
    # `main` puts the real defaults back afterwards.
    defaults = {}
    for action in common._actions:
        if action.dest != "help":
            defaults[action.dest] = action.default
            action.default = argparse.SUPPRESS
    parser = argparse.ArgumentParser(
        prog="stepvoice", parents=[common],
        description="Agent runtime for Step-Audio 2 mini: speech in, text and speech out, tools.",
        epilog="First try: stepvoice chat --text   (stepvoice doctor checks this machine)",
    )
    parser.add_argument("--version", action="version", version=f"stepvoice {__version__}")
    parser._stepvoice_common_defaults = defaults  # type: ignore[attr-defined]
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"stepvoice.assistant.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"stepvoice.assistant.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for dest, default in parser._stepvoice_common_defaults.items():  # type: ignore[attr-defined]
        if not hasattr(args, dest):
            setattr(args, dest, default)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False) or os.environ.get("STEPVOICE_DEBUG") == "1"
    if not sys.stderr.isatty():  # progress bars only on a terminal (logs, CI and pipes stay clean)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # one line for the user; the traceback only with --debug
        if debug:
            raise
        print(f"error: {describe_error(e)}", file=sys.stderr)
        return 1


def describe_error(e: BaseException) -> str:
    from stepvoice.engine.errors import StepvoiceError

    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, StepvoiceError):
        return msg or type(e).__name__
    if isinstance(e, FileNotFoundError):
        return f"file not found: {e.filename or msg}"
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
