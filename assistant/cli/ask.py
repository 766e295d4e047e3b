"""`stepvoice ask`: one question (text and/or audio), one answer, with tools, retrieval and voice.

Streams the answer to stdout as it is generated (`--no-stream`: all at once at the end),
or with `--json` prints one object: text, speech_codes,
tool_calls (name, arguments, result), token_ids, prompt_token_ids, voice,
audio (the wav written by `--speak`), usage, options (the effective temperature,
top_p, top_k, repetition_penalty, max_new_tokens, seed; null = the backend's default).
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

TASK_CHOICES = ("chat", "asr", "translate", "caption", "paralinguistic", "think")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("ask", parents=[common], help="ask one question (text or audio); print or speak the answer")
    p.add_argument("--model", help="checkpoint folder, hub id, vllm+http://HOST:PORT or scripted:FILE.yaml")
    p.add_argument("--text", help="the question (or an instruction that goes with --audio); "
                                  "without --text and --audio the question is read from stdin")
    p.add_argument("--audio", help="an audio file to ask with (wav, flac, ogg, mp3)")
    p.add_argument("--speak", metavar="OUT.wav", help="answer in speech and write it to this wav file")
    p.add_argument("--voice", help="voice bank name to speak with")
    p.add_argument("--task", choices=TASK_CHOICES, default="chat", help="task preset (official prompts)")
    p.add_argument("--target-lang", help="target language for --task translate (en, zh, ja, ...)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-stream", action="store_true", help="print the answer once it is complete")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=float, help="0 = greedy")
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-tools", action="store_true", help="offer the model no tools")
    p.add_argument("--tools-module", action="append", default=[], metavar="PATH",
                   help="a Python file or module with extra @tool functions (repeatable)")
    from stepvoice.assistant.cli.config import add_engine_flags

    add_engine_flags(p)
    p.set_defaults(handler=ask)


def sampling_flags(args: argparse.Namespace) -> dict[str, Any]:
    names = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def ask(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import sys
    from pathlib import Path

    from stepvoice.assistant.assembly import load_parts
    from stepvoice.assistant.cli.config import common_overrides
    from stepvoice.assistant.cli.render import ReplyPrinter
    from stepvoice.assistant.config import load_config
    from stepvoice.assistant.session import Session
    from stepvoice.engine.errors import StepvoiceError
    from stepvoice.engine.messages import Audio, Message, Text

    if not args.text and not args.audio and not sys.stdin.isatty():
        try:
            args.text = sys.stdin.read().strip()  # `echo hi | stepvoice ask`
        except OSError:  # no readable stdin (a closed or captured one): nothing was asked
            pass
    if not args.text and not args.audio:
        raise StepvoiceError("nothing to ask: give --text, --audio or both (or pipe the question to stdin)")
    if args.text is not None and not args.text.strip() and not args.audio:
        raise StepvoiceError("the question is empty")
    speak = Path(args.speak) if args.speak else None
    if speak is not None:
        if speak.suffix.lower() != ".wav":
            raise StepvoiceError(f"--speak writes a .wav file, not {speak.name}")
        if not speak.parent.expanduser().resolve().is_dir():
            raise StepvoiceError(f"--speak: folder does not exist: {speak.parent}")
    cfg = load_config(args.config_file, {**common_overrides(args), "model": args.model, "voice": args.voice})
    parts_of_message: list[Any] = []
    if args.audio:  # read (and refuse bad audio) before loading any model
        from stepvoice.engine.audio import load_audio

        parts_of_message.append(Audio(load_audio(args.audio)))
    if args.text:
        parts_of_message.append(Text(args.text))
    reply = "speech" if speak is not None else "text"
    parts = load_parts(cfg, tools=not args.no_tools, tools_modules=args.tools_module, speech=speak is not None,
                       voices=bool(args.voice))
    session = Session(parts.backend, config=cfg, tools=parts.tools, retriever=parts.retriever,
                      voice_bank=parts.voice_bank, token2wav=parts.token2wav, voice=args.voice, task=args.task,
                      target_lang=args.target_lang, generation=sampling_flags(args))
    printer = None if args.json or args.no_stream else ReplyPrinter(sys.stdout, sys.stderr)
    result = asyncio.run(one_turn(session, Message("human", parts_of_message), reply, on_event=printer))
    if printer is not None:
        printer.end_line()
    end = result.end
    audio_path = None
    problems = list(parts.notes) if speak is not None else []
    if speak is not None:
        if result.audio:
            audio_path = str(result.write_wav(speak))
        elif not problems and result.speech_codes:
            problems.append("no speech audio was produced")
        elif not problems:  # the model answered without speech: not a failure, but say so
            print(f"note: the answer has no speech; nothing written to {speak}", file=sys.stderr)
    if args.json:
        from stepvoice.engine.options import effective_report

        prompt_ids = getattr(parts.backend, "last_prompt_ids", None)
        print(json.dumps({
            "text": result.text,
            "speech_codes": result.speech_codes,
            "tool_calls": result.tool_calls(),
            "token_ids": list(end.token_ids) if end else [],
            "prompt_token_ids": list(prompt_ids) if prompt_ids else None,
            "voice": session.voice,
            "audio": audio_path,
            "usage": result.usage(),
            "options": effective_report(parts.backend, session.last_options),  # what sampling ran
            "reason": end.reason if end else None,
            "task": args.task,
            "notes": problems,
        }, ensure_ascii=False))
    elif printer is None:
        for call in result.tool_calls():  # what the model did, beside (not in) the answer
            state = "ok" if call["ok"] else "failed"
            print(f"[{call['name']}({json.dumps(call['arguments'], ensure_ascii=False)}): {state}]", file=sys.stderr)
        for v in result.voices:
            print(f"[voice: {v.name}]", file=sys.stderr)
        print(result.text.strip())
    if end is not None and end.reason in ("error", "script_exhausted"):
        raise StepvoiceError(f"generation failed: {end.error or end.reason}")
    if speak is not None and audio_path is None and problems:
        print(f"error: nothing written to {speak}: {problems[0]}", file=sys.stderr)
        return 1
    return 0


async def one_turn(session: Any, message: Any, reply: str, on_event: Callable[[Any], None] | None = None) -> Any:
    """Run one respond() with the registry's MCP servers connected for its duration; `on_event` sees
    each event as it arrives (the streamed answer)."""
    import time

    from stepvoice.assistant.turn_result import TurnResult

    registry = session.tools
    if registry is not None and hasattr(registry, "start"):
        await registry.start()
    try:
        result = TurnResult()
        start = time.perf_counter()
        async for event in session.respond(message, reply=reply):
            result.add(event, start)
            if on_event is not None:
                on_event(event)
        return result
    finally:
        if registry is not None and hasattr(registry, "aclose"):
            await registry.aclose()
