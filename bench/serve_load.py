"""Load on `stepvoice serve`: N concurrent Realtime sessions for D seconds on loopback.

    .venv/bin/python bench/serve_load.py [--sessions 20] [--seconds 300] [--pause 2.0] [--codes 25] [--no-speech]
    .venv/bin/python bench/serve_load.py --turns 300 [--sessions 20]     # soak: turns in compressed time

Starts the real server (`python -m stepvoice serve`) with the scripted engine
and a token2wav folder (default: the fake `tiny` one, written to a temp dir;
`--token2wav DIR` for another), then runs N clients at once. Each client
configures audio in and out, and loops: 1 s of PCM16 24 kHz input in 100 ms
appends, commit, `response.create`, read the spoken reply to `response.done`,
pause. It reports errors (error events, failed responses, dropped
connections; goal 0), first-audio latency (response.create -> first
`response.output_audio.delta`: p50/p99) and the server's resident memory
(RSS) after start-up, at its peak and at the end, with end/start as a ratio.
`--no-speech` runs without token2wav and times the first transcript delta
instead: the server's own overhead, without the cost of synthesis.

`--turns N` is the soak: every session runs exactly N turns back to back (no
pause: hours of conversation in minutes) and the table shows the server's RSS
after each tenth of all turns; the run holds a plateau when the last third of
the turns grows RSS by less than 5%.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


def write_script(path: Path, replies: int, codes: int) -> None:
    reply = {"text": "This is a spoken reply from the load test.", "speech_codes": [(7 * i) % 6561 for i in range(codes)]}
    path.write_text(json.dumps({"replies": [reply] * replies}))  # JSON is YAML


def start_server(script: Path, token2wav: Path | None, home: Path) -> tuple[subprocess.Popen, int]:
    from stepvoice.assistant.server.launch import spawn_server

    env = {**os.environ, "STEPVOICE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("STEPVOICE_TOKEN", None)
    speech = ["--token2wav", str(token2wav)] if token2wav else []
    return spawn_server(["--no-tools", "--model", f"scripted:{script}", *speech], env, home.parent / "server.log")


async def client(port: int, deadline: float, pause: float, stats: dict, first_type: str,
                 turns: int | None = None) -> None:
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(24000) / 24000) * 32767).astype("<i2")
    import base64

    chunks = [base64.b64encode(c.tobytes()).decode() for c in np.split(tone, 10)]
    try:
        async with connect(f"ws://127.0.0.1:{port}/v1/realtime", max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"turn_detection": None}}}}))
            done_turns = 0
            while (time.perf_counter() < deadline) if turns is None else done_turns < turns:
                done_turns += 1
                for c in chunks:
                    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": c}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "response.create"}))
                first = None
                samples = 0
                while True:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), 120))
                    if ev["type"] == "error":
                        stats["errors"].append(ev["error"]["message"])
                    elif ev["type"] == first_type and first is None:
                        first = time.perf_counter() - t0
                    if ev["type"] == "response.output_audio.delta":
                        samples += len(ev["delta"]) * 3 // 8  # base64 -> bytes -> int16 samples
                    elif ev["type"] == "response.done":
                        if ev["response"]["status"] != "completed":
                            stats["errors"].append(f"response {ev['response']['status']}: {ev['response'].get('status_details')}")
                        break
                if first is None:
                    stats["errors"].append(f"a response without {first_type}")
                else:
                    stats["first_audio"].append(first)
                stats["turns"] += 1
                stats["audio_s"] += samples / 24000
                if stats.get("on_turn"):
                    stats["on_turn"]()
                await asyncio.sleep(pause)
    except Exception as e:  # a dropped connection or a stalled server counts as an error
        stats["errors"].append(f"{type(e).__name__}: {e}")


async def drive(port: int, sessions: int, seconds: float, pause: float, pid: int, first_type: str,
                turns: int | None = None) -> dict:
    stats = {"errors": [], "first_audio": [], "turns": 0, "audio_s": 0.0, "peak_rss_mb": rss_mb(pid), "rss": [],
             "rss_by_turns": []}
    deadline = time.perf_counter() + seconds if turns is None else math.inf
    if turns is not None:  # soak: RSS after each tenth of all turns
        total = sessions * turns
        marks = [max(1, total * k // 10) for k in range(1, 11)]

        def on_turn() -> None:
            while marks and stats["turns"] >= marks[0]:
                stats["rss_by_turns"].append((marks.pop(0), rss_mb(pid)))

        stats["on_turn"] = on_turn

    async def watch():
        while True:
            now = rss_mb(pid)
            stats["peak_rss_mb"] = max(stats["peak_rss_mb"], now)
            stats["rss"].append(now)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(client(port, deadline, pause, stats, first_type, turns) for _ in range(sessions)))
    watcher.cancel()
    return stats


def run(sessions: int = 20, seconds: float = 300, pause: float = 2.0, codes: int = 25, token2wav: str | None = None,
        speech: bool = True, turns: int | None = None) -> dict:
    first_type = "response.output_audio.delta" if speech else "response.output_audio_transcript.delta"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t2w = Path(token2wav) if token2wav else None
        if t2w is None and speech:
            from stepvoice.engine.token2wav.fake import write_fake_token2wav

            t2w = write_fake_token2wav(tmp / "token2wav", "tiny")
        # every connection parses its own copy of the script when it connects (on the server's loop):
        # keep it small; soak turns need extra replies for compaction's ASR passes over older audio
        replies = int(seconds / max(pause, 0.05)) + 20 if turns is None else 3 * turns + 20
        write_script(tmp / "script.yaml", replies=replies, codes=codes if speech else 1)
        proc, port = start_server(tmp / "script.yaml", t2w, tmp / "home")
        try:
            start_rss = rss_mb(proc.pid)
            t = time.perf_counter()
            stats = asyncio.run(drive(port, sessions, seconds, pause, proc.pid, first_type, turns))
            wall = time.perf_counter() - t
            end_rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    fa = stats["first_audio"]
    by_turns = stats["rss_by_turns"]
    at_two_thirds = None
    if by_turns:
        total = by_turns[-1][0]
        at_two_thirds = min(by_turns, key=lambda x: abs(x[0] - total * 2 / 3))[1]
    return {
        "turns_per_session": turns,
        "rss_by_turns_mb": [(n, round(mb, 1)) for n, mb in by_turns],
        "last_third_growth": round(by_turns[-1][1] / at_two_thirds - 1, 4) if by_turns else None,
        "sessions": sessions, "seconds": seconds, "wall_s": round(wall, 1), "turns": stats["turns"],
        "audio_out_s": round(stats["audio_s"], 1), "errors": len(stats["errors"]), "error_examples": stats["errors"][:5],
        "first": "audio" if speech else "transcript",
        "first_audio_p50_ms": round(1000 * statistics.median(fa), 1) if fa else None,
        "first_audio_p90_ms": round(1000 * percentile(fa, 90), 1) if fa else None,
        "first_audio_p99_ms": round(1000 * percentile(fa, 99), 1) if fa else None,
        "first_audio_max_ms": round(1000 * max(fa), 1) if fa else None,
        "rss_start_mb": round(start_rss, 1), "rss_peak_mb": round(stats["peak_rss_mb"], 1), "rss_end_mb": round(end_rss, 1),
        "rss_end_over_start": round(end_rss / start_rss, 3),
        # RSS at each fifth of the run: a plateau means memory is bounded, a steady climb a leak
        "rss_by_fifth_mb": [round(stats["rss"][min(len(stats["rss"]) - 1, (len(stats["rss"]) * k) // 5)], 1)
                            for k in range(1, 6)] if stats["rss"] else [],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--pause", type=float, default=2.0, help="seconds between a reply's end and the next turn")
    p.add_argument("--codes", type=int, default=25, help="speech codes per reply (25 = 1 s of audio)")
    p.add_argument("--token2wav", default=None, help="token2wav folder (default: a fake tiny one)")
    p.add_argument("--no-speech", action="store_true", help="no token2wav: time the first transcript delta")
    p.add_argument("--turns", type=int, default=None,
                   help="soak: each session runs this many turns back to back (--pause defaults to 0)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    pause = args.pause if args.turns is None or any(a.startswith("--pause") for a in sys.argv[1:]) else 0.0
    r = run(args.sessions, args.seconds, pause, args.codes, args.token2wav, speech=not args.no_speech, turns=args.turns)
    if args.json:
        print(json.dumps(r))
        return
    what = "no token2wav" if args.no_speech else (args.token2wav or "token2wav fake tiny")
    span = f"{r['turns_per_session']} turns each" if r["turns_per_session"] else f"{r['seconds']:g} s"
    print(f"{r['sessions']} sessions x {span} on loopback (scripted engine, {what}; {r['wall_s']} s wall)")
    print(f"  turns {r['turns']}, reply audio {r['audio_out_s']} s, errors {r['errors']} {r['error_examples'] or ''}")
    print(f"  first {r['first']}: p50 {r['first_audio_p50_ms']} ms, p90 {r['first_audio_p90_ms']} ms, "
          f"p99 {r['first_audio_p99_ms']} ms, max {r['first_audio_max_ms']} ms")
    print(f"  server RSS: start {r['rss_start_mb']} MB, peak {r['rss_peak_mb']} MB, end {r['rss_end_mb']} MB "
          f"(end/start {r['rss_end_over_start']}); by fifths of the run {r['rss_by_fifth_mb']} MB")
    if r["rss_by_turns_mb"]:
        print("  turns done | server RSS MB")
        for n, mb in r["rss_by_turns_mb"]:
            print(f"  {n:>10} | {mb:>8}")
        growth = r["last_third_growth"]
        print(f"  last third of the turns: RSS {growth:+.1%} ({'plateau' if growth < 0.05 else 'still growing'}, goal < +5%)")


if __name__ == "__main__":
    main()
