"""Prefix reuse across turns: time to the first token as a spoken conversation grows, reuse on vs off.

    .venv/bin/python bench/session_prefix.py [--turns 10] [--audio-seconds 3] [--repeats 3] [--size small]

Two sessions on the same local backend (a fake checkpoint of `--size`, CPU
by default) hold the same greedy conversation of spoken user turns; one keeps
its KV cache across turns (`prefix_cache = true`), the other prefills the
whole conversation every turn. Each turn replies with one token, so the
turn's time is the time to the first token (prompt build, audio encoder,
prefill, one sample). Turns run interleaved (A B A B), the conversation is
repeated `--repeats` times, and the medians per turn are printed with the
goals of issue #12: turn N costs <= 1.2x turn 1 with reuse, and reuse is
>= 5x faster than no reuse at turn N.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.session import Session

SENTENCES = ["What is the weather like in Paris today?", "Tell me a short story about the sea.",
             "How far away is the moon from the earth?", "Can you recommend a good book to read?",
             "What should I cook for dinner tonight?"]


def speech(text: str, seconds: float) -> np.ndarray:
    """espeak-ng speech of `text` fitted to `seconds` (noise when espeak-ng is missing)."""
    n = int(seconds * 16000)
    if shutil.which("espeak-ng") is None:
        return (0.05 * np.random.default_rng(len(text)).standard_normal(n)).astype(np.float32)
    import soundfile as sf
    import soxr

    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["espeak-ng", "-w", f"{d}/s.wav", text], check=True)
        x, sr = sf.read(f"{d}/s.wav", dtype="float32", always_2d=True)
    x = soxr.resample(x[:, 0], sr, 16000).astype(np.float32)
    return np.resize(x, n) if len(x) < n else x[:n]


def session(backend, reuse: bool) -> Session:
    cfg = AssistantConfig(prefix_cache=reuse, reply="speech")
    cfg.generation.max_new_tokens = 1  # the turn's time is its time to first token
    cfg.generation.temperature = 0.0
    return Session(backend, config=cfg)


async def turn(s: Session, audio: np.ndarray) -> tuple[float, int, int]:
    end = [e async for e in s.respond(audio)][-1]
    assert end.reason in ("stop", "length"), end
    return end.usage.elapsed_s, end.usage.prompt_tokens, end.usage.cached_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--audio-seconds", type=float, default=3.0, help="length of each spoken user turn")
    ap.add_argument("--repeats", type=int, default=3, help="whole conversations (medians over them)")
    ap.add_argument("--size", default="small", choices=["tiny", "small"], help="fake checkpoint size")
    ap.add_argument("--checkpoint", type=Path, help="a checkpoint folder instead of a fake one")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from stepvoice.engine.backends.local import LocalBackend
    from stepvoice.engine.checkpoint import fake

    with tempfile.TemporaryDirectory() as d:
        folder = args.checkpoint or fake(Path(d) / "ckpt", args.size)
        backend = LocalBackend.from_spec(str(folder), device=args.device)
        clips = [speech(SENTENCES[i % len(SENTENCES)], args.audio_seconds) for i in range(args.turns)]
        times: dict[bool, list[list[float]]] = {True: [[] for _ in clips], False: [[] for _ in clips]}
        shape: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
        asyncio.run(turn(session(backend, False), clips[0]))  # warm-up (allocator, kernels)
        for r in range(args.repeats):
            sessions = {True: session(backend, True), False: session(backend, False)}
            for k, clip in enumerate(clips):
                order = (True, False) if (r + k) % 2 == 0 else (False, True)  # interleaved A B / B A
                for reuse in order:
                    elapsed, prompt, cached = asyncio.run(turn(sessions[reuse], clip))
                    times[reuse][k].append(elapsed)
                    if r == 0:
                        shape[reuse].append((prompt, cached))

    med = {reuse: [statistics.median(v) * 1000 for v in times[reuse]] for reuse in (True, False)}
    print(f"fake {args.size} checkpoint on {args.device}, {args.turns} spoken turns of {args.audio_seconds:g} s, "
          f"one-token replies, medians of {args.repeats} conversations (interleaved)")
    print(f"{'turn':>4s} {'prompt':>7s} {'cached':>7s} {'reuse ms':>9s} {'no reuse ms':>12s} {'speedup':>8s}")
    for k in range(args.turns):
        prompt, cached = shape[True][k]
        print(f"{k + 1:4d} {prompt:7d} {cached:7d} {med[True][k]:9.1f} {med[False][k]:12.1f} "
              f"{med[False][k] / med[True][k]:7.1f}x")
    n = args.turns - 1
    growth, speedup = med[True][n] / med[True][0], med[False][n] / med[True][n]
    print(f"\nturn {args.turns} / turn 1 with reuse: {growth:.2f}x (goal <= 1.2x)")
    print(f"turn {args.turns}: no reuse / reuse: {speedup:.1f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
