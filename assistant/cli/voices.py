"""`stepvoice voices add|list|search|rm`: the voice bank in the data dir."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("voices", help="manage reference voices (clip + description) and find them")
    sub = p.add_subparsers(dest="voices_command", metavar="ACTION", required=True)
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default=None, metavar="DIR",
                       help="checkpoint folder: use its token2wav campplus for speaker vectors "
                            "(and with `add`, prepare and cache the voice prompt now)")

    add = sub.add_parser("add", parents=[common, model], help="add a voice from a 3-30 s clip")
    add.add_argument("wav", metavar="WAV")
    add.add_argument("--name", required=True)
    add.add_argument("--description", required=True, help="the timbre, in any language (e.g. 'a warm low male voice')")
    add.add_argument("--transcript", default=None, help="what is said in the clip")
    add.add_argument("--tags", default="", help="comma-separated tags")
    add.add_argument("--replace", action="store_true", help="replace a voice of the same name")
    add.set_defaults(handler=add_voice)

    ls = sub.add_parser("list", parents=[common], help="list voices")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_voices)

    search = sub.add_parser("search", parents=[common, model], help="find voices by description or by example clip")
    search.add_argument("query", nargs="?", default=None, help="a timbre description, any language")
    search.add_argument("--like", default=None, metavar="WAV", help="find the voices closest to this clip")
    search.add_argument("--k", type=int, default=3)
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=search_voices)

    rm = sub.add_parser("rm", parents=[common], help="remove a voice")
    rm.add_argument("name")
    rm.set_defaults(handler=remove_voice)


def _bank(args: argparse.Namespace, prepare: Any = None):
    from stepvoice.assistant.paths import data_dir
    from stepvoice.voice_bank import VoiceBank, prompt_key_for

    checkpoint = getattr(args, "model", None)
    if checkpoint and not Path(checkpoint).is_dir():
        from stepvoice.engine.errors import ConfigError

        raise ConfigError(f"--model {checkpoint}: not a checkpoint folder")
    return VoiceBank.open(data_dir(args.data_dir), prepare=prepare, checkpoint=checkpoint,
                          prompt_key=prompt_key_for(checkpoint))


def _prepare_with(checkpoint: str):
    from stepvoice.engine.token2wav import Token2Wav

    folder = Path(checkpoint) / "token2wav"
    return Token2Wav.from_dir(folder if folder.is_dir() else Path(checkpoint), device="cpu").prepare_voice


def add_voice(args: argparse.Namespace) -> int:
    prepare = _prepare_with(args.model) if args.model else None
    tags = [t for t in args.tags.split(",") if t.strip()]
    with _bank(args, prepare) as bank:
        voice = bank.add(args.wav, args.name, args.description, args.transcript, tags, replace=args.replace)
        print(f"added voice {voice.name}")
        if prepare is not None:
            bank.prompt(voice.name)
            print(f"prepared its token2wav prompt: {bank.prompt_path(voice.name)}")
    return 0


def list_voices(args: argparse.Namespace) -> int:
    import soundfile as sf

    with _bank(args) as bank:
        voices = bank.list()
    default = _default_voice(args)
    if args.json:
        print(json.dumps([{**v.to_dict(), "default": v.name == default} for v in voices], ensure_ascii=False))
        return 0
    for v in voices:
        seconds = sf.info(str(v.clip)).duration if v.clip.is_file() else 0.0
        mark = "*" if v.name == default else " "
        print(f"{mark} {v.name:<20} {v.origin:<8} {seconds:5.1f}s  {v.description}")
    print(f"* default voice (speaks when no voice is chosen): {default}")
    return 0


def _default_voice(args: argparse.Namespace) -> str:
    """The configured `voice`, else the built-in default (the female starter voice)."""
    from stepvoice.voice_bank.voice import DEFAULT_VOICE

    try:
        from stepvoice.assistant.config import load_config

        configured = load_config(getattr(args, "config_file", None)).voice
    except Exception:  # a broken config is reported by the commands that use it; listing still works
        configured = None
    return configured or DEFAULT_VOICE


def search_voices(args: argparse.Namespace) -> int:
    from stepvoice.engine.errors import ConfigError

    if (args.query is None) == (args.like is None):
        raise ConfigError("give a description QUERY or --like WAV (one of them)")
    if args.k <= 0:
        raise ConfigError("--k must be a positive number")
    with _bank(args) as bank:
        matches = bank.search(args.query, args.k) if args.query is not None else bank.search_like(args.like, args.k)
    if args.json:
        print(json.dumps([m.to_dict() for m in matches], ensure_ascii=False))
        return 0
    for n, m in enumerate(matches, 1):
        print(f"{n}. [{m.score:.3f}] {m.name}: {m.description}")
    return 0


def remove_voice(args: argparse.Namespace) -> int:
    with _bank(args) as bank:
        bank.remove(args.name)
    print(f"removed voice {args.name}")
    return 0
