"""token2wav speed: ours vs the reference modules (step-audio2), same weights, same run.

Real-size random weights (a fake token2wav/ folder, written once into --dir),
a 6 s reference voice and 4 s of speech (100 codes). Measures, for both:
offline real-time factor (flow + vocoder), first streamed chunk latency
(stream start + first chunk) and steady streaming real-time factor (the later
chunks), and checks the outputs agree. Ours is also timed with the voice's
stream start already cached (a voice used before), with a smaller first
chunk, and with fewer flow-matching steps (the quality knob).

    .venv/bin/python bench/token2wav.py [--dir /tmp/t2w_real] [--size real] [--threads N]

RTF = seconds of compute / seconds of audio (< 1 is faster than real time).

Measured 2026-11-25 on the shared 2-core dev machine (load 0.6-3), real size:
offline RTF 2.32 -> 2.20 (1.05x; 1.5x under heavy load, where the fused
elementwise path matters); first chunk 6.9 s -> 6.8 s cold, 1.6 s once the
voice's stream start is cached (4.3x), 1.1 s with first_chunk=10 (6.4x);
steady streaming RTF 2.05 -> 1.73 (1.19x), 0.87-1.0 with n_timesteps=5.
Both sides are GEMM-bound at near machine peak, so a whole-utterance decode
cannot get much faster without doing less work (fewer steps).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/stepvoice_bench_t2w", help="fake token2wav folder (written if absent)")
    parser.add_argument("--size", default="real", choices=["tiny", "small", "real"])
    parser.add_argument("--prompt-seconds", type=float, default=6.0)
    parser.add_argument("--codes", type=int, default=100, help="speech codes to voice (25 per second)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--fast-steps", type=int, default=5, help="n_timesteps for the quality-knob run")
    parser.add_argument("--small-first", type=int, default=10, help="first chunk (codes) for the low-latency run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure (the fastest is kept)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))  # the reference driver lives with the tests

    from stepvoice.engine.audio import load_audio
    from stepvoice.engine.token2wav import Token2Wav, default_voice_path
    from stepvoice.engine.token2wav.check import check_token2wav
    from stepvoice.engine.token2wav.fake import write_fake_token2wav
    import token2wav_reference as ref

    folder = Path(args.dir) / args.size
    if check_token2wav(folder):
        print(f"writing a fake {args.size} token2wav folder to {folder} ...", flush=True)
        write_fake_token2wav(folder, args.size)

    ours = Token2Wav.from_dir(folder, seed=0)
    flow, hift = ref.load_reference(folder, ours.flow.decoder.rand_noise)
    assets = default_voice_path().parent
    clip = np.concatenate([load_audio(p) for p in sorted(assets.glob("*.wav"))])[: int(16000 * args.prompt_seconds)]
    voice = ours.prepare_voice(clip)
    codes = [int(c) for c in np.random.default_rng(0).integers(0, 6561, args.codes)]
    audio_s = args.codes / 25
    print(f"threads {torch.get_num_threads()}, {args.size} size, prompt {voice.seconds:.1f} s, speech {audio_s:.1f} s; "
          f"machine shared with other work: figures are indicative")

    def ref_offline():
        with torch.inference_mode():
            return ref.reference_offline(flow, hift, codes, voice, 0)[1]

    def ref_stream():
        """Reference: stream start + chunks of 25 (+3 look-ahead); returns (chunks, start_s, chunk_s)."""
        with torch.inference_mode():
            t0 = time.perf_counter()
            rs = ref.ReferenceStream(flow, hift, voice, 0)
            start = time.perf_counter() - t0
            chunks, times = [], []
            for a, b, last in ref.chunk_plan(args.codes):
                c0 = time.perf_counter()
                chunks.append(rs.chunk(codes[a:b], last))
                times.append(time.perf_counter() - c0)
        return chunks, start, times

    def our_stream(first: int, steps: int | None = None, warm: bool = False):
        """Ours fed exactly the same plan (the stream keeps the look-ahead codes itself)."""
        if not warm:
            ours.clear_cache()
        else:
            ours.stream(voice, first_chunk=first, n_timesteps=steps)  # make sure the start is cached
        t0 = time.perf_counter()
        s = ours.stream(voice, first_chunk=first, n_timesteps=steps)
        start = time.perf_counter() - t0
        chunks, times, pos = [], [], 0
        for a, b, last in ref.chunk_plan(args.codes, first=first):
            c0 = time.perf_counter()
            if last:
                out = np.concatenate([s.push(codes[pos:]), s.finish()])
            else:
                out, pos = s.push(codes[pos:b]), b
            chunks.append(out)
            times.append(time.perf_counter() - c0)
        return chunks, start, times

    def first(runs) -> float:  # stream start + first chunk, least disturbed repeat (shared machine)
        return min(r[1] + r[2][0] for r in runs)

    def steady(runs) -> float:  # later chunks (1 s of audio each): per chunk the fastest repeat
        n = len(runs[0][2])
        later = range(1, n - 1) if n > 2 else range(1, n)
        return sum(min(r[2][i] for r in runs) for i in later) / max(len(later), 1)

    ref_wav = our_wav = None
    t_ref_off, t_our_off, ref_runs, cold_runs, warm_runs, small_runs, fast_runs = [], [], [], [], [], [], []
    for _ in range(args.repeat):  # alternate reference and ours so that both see the same load
        ref_wav, t = timed(ref_offline)
        t_ref_off.append(t)
        our_wav, t = timed(ours.synthesize, codes, voice)
        t_our_off.append(t)
        ref_runs.append(ref_stream())
        cold_runs.append(our_stream(25))
        ref_runs.append(ref_stream())
        warm_runs.append(our_stream(25, warm=True))
        small_runs.append(our_stream(args.small_first, warm=True))
        fast_runs.append(our_stream(25, args.fast_steps, warm=True))
    t_ref_off, t_our_off = min(t_ref_off), min(t_our_off)
    off_diff = float(np.abs(our_wav - ref_wav).max())
    stream_diff = max(float(np.abs(a - b).max()) for a, b in zip(cold_runs[0][0], ref_runs[0][0]))
    same_sizes = [c.size for c in cold_runs[0][0]] == [c.size for c in ref_runs[0][0]]
    ref_first = first(ref_runs)

    rows = [
        ("offline RTF", t_ref_off / audio_s, t_our_off / audio_s),
        ("first chunk s (cold: stream start + chunk)", ref_first, first(cold_runs)),
        ("first chunk s (voice used before)", ref_first, first(warm_runs)),
        (f"first chunk s (voice used before, first_chunk={args.small_first})", ref_first, first(small_runs)),
        ("steady streaming RTF", steady(ref_runs), steady(warm_runs)),
        (f"steady streaming RTF, n_timesteps={args.fast_steps}", steady(ref_runs), steady(fast_runs)),
        (f"first chunk s (voice used before), n_timesteps={args.fast_steps}", ref_first, first(fast_runs)),
    ]
    print(f"\n{'measure':<62}{'reference':>11}{'ours':>9}{'speedup':>9}")
    for name, r, o in rows:
        print(f"{name:<62}{r:>11.3f}{o:>9.3f}{r / o:>8.2f}x")
    print(f"\noffline waveform max |ours - reference| = {off_diff:.2e}; streamed chunks: "
          f"{'same sizes' if same_sizes else 'DIFFERENT sizes'}, max |diff| = {stream_diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
