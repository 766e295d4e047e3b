"""`stepvoice chat`: talk with the model through a microphone and speaker, or type (`--text`).

Listens with Silero VAD, answers aloud while still generating, stops when the
user talks over it (with --headphones; on open speakers the mic is muted while
the assistant speaks). --input-file plays wav files into the loop instead of a
microphone (and --record keeps what the speaker got), without any sound device.
--text is a typed chat in the terminal (assistant/cli/text_chat.py).
"""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("chat", parents=[common], help="chat by voice (microphone and speaker) or --text")
    p.add_argument("--text", action="store_true",
                   help="typed chat in the terminal (reads lines from stdin when it is piped)")
    p.add_argument("--speak", action="store_true", help="with --text: also play the replies on the speaker")
    p.add_argument("--model", help="checkpoint folder, hub id, vllm+http://HOST:PORT or scripted:FILE.yaml")
    p.add_argument("--input-device", help="microphone: index or part of its name (see --list-devices)")
    p.add_argument("--output-device", help="speaker: index or part of its name")
    p.add_argument("--list-devices", action="store_true", help="list sound devices and exit")
    p.add_argument("--headphones", action="store_true",
                   help="full duplex: keep listening while speaking, so talking over a reply interrupts it")
    p.add_argument("--echo-cancel", action="store_true",
                   help="open speakers, full duplex: cancel the reply's echo in the mic (needs stepvoice[aec])")
    p.add_argument("--push-to-talk", action="store_true", help="press Enter to start talking, Enter again to send")
    p.add_argument("--trace", action="store_true", help="print the latency of each turn")
    p.add_argument("--voice", help="voice bank name to speak with")
    p.add_argument("--silence-ms", type=float, help="silence that ends an utterance (default 500)")
    p.add_argument("--vad-threshold", type=float, help="speech probability threshold (default 0.5)")
    p.add_argument("--no-tools", action="store_true", help="offer the model no tools")
    p.add_argument("--input-file", action="append", default=[], metavar="WAV",
                   help="play these files into the loop instead of a microphone (repeatable)")
    p.add_argument("--record", metavar="OUT.wav", help="with --input-file: write what the speaker got")
    from stepvoice.assistant.cli.config import add_engine_flags

    add_engine_flags(p)
    p.set_defaults(handler=chat)


def chat(args: argparse.Namespace) -> int:
    import asyncio
    import sys
    import time

    from stepvoice.assistant.assembly import load_parts
    from stepvoice.assistant.cli.config import common_overrides
    from stepvoice.assistant.config import load_config
    from stepvoice.assistant.endpointing import EndpointConfig
    from stepvoice.assistant.paths import data_dir
    from stepvoice.assistant.session import Session
    from stepvoice.assistant.transcript import save_conversation
    from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
    from stepvoice.engine.errors import StepvoiceError

    if args.list_devices:
        from stepvoice.assistant.audio_io.devices import format_devices

        print(format_devices())
        return 0
    if args.speak and not args.text:
        raise StepvoiceError("--speak goes with --text (a voice chat always speaks)")
    from stepvoice.tools.policy import CONFIRMER, terminal_confirmer

    CONFIRMER.set(terminal_confirmer())  # tools under `confirm` (tools.policy) ask here, at the terminal
    if args.text:
        return _text_chat(args)
    if args.record and not args.input_file:
        raise StepvoiceError("--record works with --input-file (a live speaker is not recorded)")
    if args.echo_cancel:
        from stepvoice.assistant.audio_io.echo import EchoCanceller

        EchoCanceller()  # fails now, with the install hint, if the aec extra is missing
    endpoint = EndpointConfig(**{k: v for k, v in (("silence_ms", args.silence_ms),
                                                   ("threshold", args.vad_threshold)) if v is not None})
    audio = _open_audio(args)  # devices first: a missing microphone is reported before a model loads
    cfg = load_config(args.config_file, {**common_overrides(args), "model": args.model, "voice": args.voice})
    parts = load_parts(cfg, tools=not args.no_tools, speech=True)
    for note in parts.notes:
        print(f"note: {note}", file=sys.stderr)
    session = Session(parts.backend, config=cfg, tools=parts.tools, retriever=parts.retriever,
                      voice_bank=parts.voice_bank, token2wav=parts.token2wav, voice=args.voice)
    home = data_dir(cfg.data_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    loop = VoiceLoop(session, audio, log_path=home / "logs" / f"chat-{stamp}.jsonl",
                     config=VoiceLoopConfig(full_duplex=args.headphones, echo_cancel=args.echo_cancel,
                                            push_to_talk=args.push_to_talk,
                                            trace=args.trace, endpoint=endpoint, speculate=cfg.speculate,
                                            speculate_pause_ms=cfg.speculate_pause_ms))
    if not args.input_file:
        how = "press Enter to talk, Enter again to send" if args.push_to_talk else "speak"
        print(f"listening on {audio.description}: {how}; Ctrl-C ends", file=sys.stderr)
    from stepvoice.assistant.loop_ready import prepare_loop

    prepare_loop(speech=parts.token2wav is not None, vad=True)  # no first imports or full GCs mid-conversation
    try:
        asyncio.run(_run(loop, args.push_to_talk and not args.input_file))
    except KeyboardInterrupt:  # a second Ctrl-C, or a platform without signal handlers
        pass
    finally:
        saved = save_conversation(session.history, home / "conversations" / f"chat-{stamp}.json")
        print(f"conversation saved to {saved}", file=sys.stderr)
    if args.record:
        import soundfile as sf

        sf.write(args.record, audio.output, audio.playback.device_rate)
    return 0


def _open_audio(args: argparse.Namespace) -> Any:
    if args.input_file:
        from stepvoice.assistant.audio_io.inprocess import InProcessAudio
        from stepvoice.engine.audio import load_audio

        return InProcessAudio([load_audio(f) for f in args.input_file], finite=True, tail_s=1.0)
    from stepvoice.assistant.audio_io.devices import find_device
    from stepvoice.assistant.audio_io.portaudio import SoundDeviceAudio

    from stepvoice.engine.errors import AudioError

    try:
        find_device(args.input_device, "input")
        find_device(args.output_device, "output")
    except AudioError as e:  # no sound device: say what works without one
        raise AudioError(f"{e}; without a microphone, type with `stepvoice chat --text` "
                         "or play wav files with `--input-file FILE.wav`") from None
    return SoundDeviceAudio(args.input_device, args.output_device)


def _text_chat(args: argparse.Namespace) -> int:
    import sys
    import time

    from stepvoice.assistant.assembly import load_parts
    from stepvoice.assistant.cli.config import common_overrides
    from stepvoice.assistant.cli.text_chat import run_text_chat
    from stepvoice.assistant.config import load_config
    from stepvoice.assistant.paths import data_dir
    from stepvoice.assistant.session import Session
    from stepvoice.assistant.transcript import save_conversation

    cfg = load_config(args.config_file, {**common_overrides(args), "model": args.model, "voice": args.voice})
    parts = load_parts(cfg, tools=not args.no_tools, speech=args.speak)
    for note in parts.notes:
        print(f"note: {note}", file=sys.stderr)
    session = Session(parts.backend, config=cfg, tools=parts.tools, retriever=parts.retriever,
                      voice_bank=parts.voice_bank, token2wav=parts.token2wav, voice=args.voice)
    home = data_dir(cfg.data_dir)
    home.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        return run_text_chat(session, speak=args.speak, output_device=args.output_device,
                             history_file=home / "chat_history.txt")
    finally:
        if session.history:
            saved = save_conversation(session.history, home / "conversations" / f"chat-{stamp}.json")
            print(f"conversation saved to {saved}", file=sys.stderr)


async def _run(loop: Any, push_to_talk: bool) -> None:
    import asyncio
    import signal

    # Prepare the voice now, not on the first reply (token2wav's front end and the voice's
    # stream start: seconds on a CPU).
    await loop.session.prepare_speech()

    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    try:  # first Ctrl-C: stop cleanly (streams closed, conversation saved); second: abort
        running.add_signal_handler(signal.SIGINT, _first_interrupt, running, stop)
    except (NotImplementedError, RuntimeError):
        pass
    if push_to_talk:
        _start_key_reader(running, loop, stop)
    await loop.run(stop=stop)


def _first_interrupt(running: Any, stop: Any) -> None:
    import signal

    stop.set()
    running.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C raises KeyboardInterrupt


def _start_key_reader(running: Any, loop: Any, stop: Any) -> None:
    """Enter toggles talking (a thread: stdin blocks)."""
    import sys
    import threading

    def read_keys() -> None:
        talking = False
        for _ in sys.stdin:
            talking = not talking
            running.call_soon_threadsafe(loop.press if talking else loop.release)
            print("[recording... Enter to send]" if talking else "[sent]", file=sys.stderr)
        running.call_soon_threadsafe(stop.set)  # stdin closed

    threading.Thread(target=read_keys, daemon=True, name="push-to-talk").start()
