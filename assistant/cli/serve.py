"""`stepvoice serve`: an OpenAI Realtime-compatible WebSocket server and a browser page."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "serve", parents=[common],
        help="serve the Realtime API at ws://HOST:PORT/v1/realtime and a browser page at http://HOST:PORT/ "
             "(wss:// and https:// with --tls-cert/--tls-key)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help="clients must present it (Authorization: Bearer, subprotocol openai-insecure-api-key.<token>, "
                        "or ?token=); env STEPVOICE_TOKEN")
    p.add_argument("--model", default=None, help="model spec: checkpoint folder, hub id, vllm+http://HOST:PORT, scripted:FILE.yaml")
    p.add_argument("--token2wav", default=None, metavar="DIR",
                   help="token2wav folder for spoken replies (default: <checkpoint>/token2wav when it exists)")
    p.add_argument("--voice", default=None, help="default voice (voice bank name)")
    p.add_argument("--no-tools", action="store_true", help="offer the model no server-side tools")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin (e.g. https://app.example.com) that may use the server besides its own "
                        "page; repeatable; config: allow_origins")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="PEM certificate: serve wss:// and https:// (the Node and browser SDKs need it)")
    p.add_argument("--tls-key", default=None, metavar="FILE", help="PEM private key of --tls-cert")
    p.add_argument("--voice-map", action="append", default=[], metavar="NAME=VOICE",
                   help="map an OpenAI voice name (alloy, ash, marin ...) to a bank voice; repeatable")
    p.add_argument("--max-connections", type=int, default=64, help="refuse clients beyond this many (default 64)")
    p.add_argument("--max-connections-per-client", type=int, default=None, metavar="N",
                   help="refuse one client address beyond this many connections (default 32)")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="close a connection idle this long (no client event, no response in flight; default 600)")
    from stepvoice.assistant.cli.config import add_engine_flags

    add_engine_flags(p)
    p.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    import asyncio

    from stepvoice.assistant.server.app import ServerConfig, run_server
    from stepvoice.engine.errors import ConfigError

    token = args.token if args.token is not None else os.environ.get("STEPVOICE_TOKEN")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, not {args.port}")
    if args.max_connections < 1:
        raise ConfigError("--max-connections must be >= 1")
    # Checked before the model loads: a refused bind or a bad origin should not cost a load.
    from stepvoice.assistant.server.limits import ServerLimits
    from stepvoice.assistant.server.redact import redact_secrets_in_logs

    redact_secrets_in_logs(token)  # --debug logs request headers: never the token
    limits = ServerLimits()
    if args.max_connections_per_client is not None:
        limits.max_connections_per_client = args.max_connections_per_client
    if args.idle_timeout is not None:
        limits.idle_timeout_s = args.idle_timeout
    try:
        limits.__post_init__()
    except ValueError as e:
        raise ConfigError(f"serve: {e}") from None
    server_config = ServerConfig(host=args.host, port=args.port, token=token, max_connections=args.max_connections,
                                 allow_origins=tuple(args.allow_origin), tls_cert=args.tls_cert, tls_key=args.tls_key,
                                 server_limits=limits)
    factory = build_factory(args)
    if factory.model_name != "scripted":  # session.update sizes are also counted in tokens (limits.py)
        factory.tokenizer = getattr(factory.new_backend(), "tokenizer", None)
    if factory.config.allow_origins:
        server_config = dataclasses.replace(
            server_config, allow_origins=server_config.allow_origins + tuple(factory.config.allow_origins))

    def ready(server) -> None:
        host = args.host if ":" not in args.host else f"[{args.host}]"
        s = "s" if server_config.ssl is not None else ""
        print(f"stepvoice serving {factory.model_name}: page http{s}://{host}:{server.port}/  "
              f"realtime ws{s}://{host}:{server.port}/v1/realtime", flush=True)

    async def main() -> None:
        # The configured MCP servers start here, in the serving loop (their tools run under the
        # tool policy: denied until allowed); one that cannot start stops serve, named.
        if factory.tools is not None:
            await factory.tools.start()
            pending = [t.name for t in factory.tools.tools() if getattr(t, "server", None) is not None]
            if pending:
                log.warning("MCP tools offered: %s (tool policy decides which run)", ", ".join(pending))
        try:
            await run_server(factory, server_config, ready)
        finally:
            if factory.tools is not None:
                await factory.tools.aclose()

    from stepvoice.assistant.loop_ready import prepare_loop

    # Off the loop before it serves: the voice/VAD C extensions' first import and a full GC of the
    # start-up heap both hold the GIL for 0.1-0.4 s (assistant/loop_ready.py).
    prepare_loop(speech=factory.token2wav is not None, vad=True)
    try:
        asyncio.run(main())
    except OSError as e:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    return 0


def build_factory(args: argparse.Namespace):
    """Backend, token2wav, tools and voice bank from flags + config, shared by every connection."""
    from stepvoice.assistant.config import load_config
    from stepvoice.assistant.server.sessions import AssistantSessions
    from stepvoice.assistant.server.voices import parse_voice_map
    from stepvoice.engine.errors import ConfigError
    from stepvoice.engine.backends import load_backend

    overrides = {k: v for k, v in {"model": args.model, "voice": args.voice, "device": args.device,
                                   "dtype": args.dtype, "data_dir": args.data_dir, "compile": args.compile,
                                   "quantize": args.quantize, "t2w_dtype": args.t2w_dtype,
                                   "t2w_steps": args.t2w_steps}.items() if v is not None}
    config = load_config(args.config_file, overrides)
    spec = config.model
    if spec and spec.startswith("scripted:"):
        load_backend(spec)  # fail now on a bad script, not at the first client

        def new_backend():  # each connection plays its own copy of the script
            import collections

            backend = load_backend(spec)
            # the scripted engine records every prompt (for tests); a server keeps only the last few,
            # or a long session would hold every prompt (and its audio) it ever built
            backend.requests = collections.deque(maxlen=4)
            return backend

        model_name = "scripted"
    else:
        from stepvoice.assistant.assembly import warm_up

        shared = load_backend(spec, device=config.device, dtype=config.dtype, quantize=config.quantize,
                              compile=config.compile)
        warm_up(shared)  # compile before the first client, not inside its first reply
        new_backend = lambda: shared  # noqa: E731
        model_name = getattr(shared, "name", "step-audio-2-mini")
    t2w_folder = _token2wav_folder(args.token2wav, spec)
    token2wav = _token2wav(t2w_folder, config)
    tools = None if args.no_tools else _tools(config)
    voice_bank = _voice_bank(config, token2wav, t2w_folder)
    try:
        voice_map = parse_voice_map(getattr(args, "voice_map", None) or [])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return AssistantSessions(new_backend, config=config, tools=tools, voice_bank=voice_bank, token2wav=token2wav,
                             model_name=model_name, voice_map=voice_map)


def _token2wav_folder(flag: str | None, spec: str | None) -> Path | None:
    folder = Path(flag) if flag else None
    if folder is None and not (spec or "").startswith(("scripted:", "vllm+")):
        from stepvoice.engine.checkpoint import resolve

        folder = resolve(spec) / "token2wav"  # the local checkpoint (a hub id is already downloaded by now)
        if not folder.is_dir():
            folder = None
    return folder


def _token2wav(folder: Path | None, config) -> Any:
    from stepvoice.engine.errors import ConfigError

    if folder is None:
        log.warning("no token2wav folder (--token2wav): replies are text and transcripts only")
        return None
    if not folder.is_dir():
        raise ConfigError(f"token2wav folder not found: {folder}")
    from stepvoice.engine.token2wav import Token2Wav

    from stepvoice.engine.device import parse_device

    # auto (the default): the best device here, even when the model itself runs on a vLLM server
    return Token2Wav.from_dir(folder, device=str(parse_device(config.device)), dtype=config.t2w_dtype,
                              n_timesteps=config.t2w_steps)


def _tools(config) -> Any:
    try:
        from stepvoice.tools import load_registry
    except ImportError as e:  # the tools package is optional for serving
        log.warning("tools unavailable (%s): serving without server-side tools", e)
        return None
    return load_registry(config.tools)


def _voice_bank(config, token2wav, folder: Path | None) -> Any:
    try:
        from stepvoice.voice_bank import VoiceBank, prompt_key_for
    except ImportError:
        return None
    from stepvoice.assistant.paths import data_dir

    from stepvoice.engine.errors import StepvoiceError

    prepare = token2wav.prepare_voice if token2wav is not None else None
    try:
        return VoiceBank.open(data_dir(config.data_dir), prepare=prepare,
                              prompt_key=prompt_key_for(folder if token2wav is not None else None))
    except StepvoiceError as e:  # e.g. no speaker encoder: serving needs none, only voice search does
        log.warning("voice bank unavailable (%s): serving with the default voice only", e)
        return None
