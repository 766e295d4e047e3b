"""token2wav speed: ours vs the reference modules (step-audio2), same weights, same run.

Real-size random weights (a fake token2wav/ folder, written once into --dir),
a 6 s reference voice and 4 s of speech (100 codes). Measures, for both:
offline real-time factor (flow + vocoder), first streamed chunk latency
(stream start + first chunk) and steady streaming real-time factor (the later
chunks), and checks the outputs agree. Ours is also timed with the voice's
stream start already cached (a voice used before), with a smaller first
chunk, and with fewer flow-matching steps (the quality knob).

Variants (`--variants`, default all): bf16 (the flow in bf16, what `auto` picks
on CPUs with native bf16), compiled (torch.compile of the estimator's block
step, fp32) and bf16+compiled. Each is timed in the same repeats as the
reference and our fp32 (runs interleaved: reference, ours, each variant) and
its offline output is compared with our fp32's (mel |diff|, waveform SNR).
Compile time is paid before the timed runs and printed.

`--quality` prints the quality/speed table instead: for each precision and
step count, against fp32 10 steps on the same codes and voice, mel mean and
max |diff|, waveform SNR, and speaker similarity (the product's speaker
embedder, stepvoice.retrieval.speaker_embedder) of the output to the prompt
and to the fp32 output.

    .venv/bin/python bench/token2wav.py [--dir /tmp/t2w_real] [--size real] [--threads N]
    .venv/bin/python bench/token2wav.py --quality [--steps 10,8,6,5,4] [--dtypes fp32,bf16,fp16]
    .venv/bin/python bench/token2wav.py --quality --device cuda   # GPU: fp16/bf16 vs fp32 on the GPU

RTF = seconds of compute / seconds of audio (< 1 is faster than real time).

Measured 2026-11-25 on the shared 2-core dev machine (load 0.6-3), real size:
offline RTF 2.32 -> 2.20 (1.05x; 1.5x under heavy load, where the fused
elementwise path matters); first chunk 6.9 s -> 6.8 s cold, 1.6 s once the
voice's stream start is cached (4.3x), 1.1 s with first_chunk=10 (6.4x);
steady streaming RTF 2.05 -> 1.73 (1.19x), 0.87-1.0 with n_timesteps=5.
Both sides are GEMM-bound at near machine peak, so a whole-utterance decode
cannot get much faster without doing less work (fewer steps).

Measured 2026-12-01, real size, --repeat 1 --threads 1, machine loaded by 8 other
agents (load 2-10 during the run: ratios indicative only; the fp32 row's own ratio
moved from 1.05x to 1.83x with that noise): bf16 offline 3.42x the reference, cold first
chunk 1.83x, warm first chunk 22x (25 codes) / 31x (10 codes), steady streaming 5.4x;
bf16+compiled 5.07x / 2.55x / 12x / 27x / 3.9x (torch.compile warm-up 168 s); bf16
output vs fp32: SNR 58.5 dB. --quality table: README.

Measured 2026-12-02 (third run, quiet machine, --variants bf16 --repeat 3 --threads 2), after
the estimator's weights were packed for oneDNN: bf16 offline RTF 0.93 vs 2.60 (2.8x), steady
streaming 0.69 vs 2.84 (4.1x), cold first chunk 2.89 s vs 7.96 s, warm first chunk 0.35 s
(10 codes). README has all three runs.
"""
from __future__ import annotations

import argparse
import statistics
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
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure, interleaved (medians are shown)")
    parser.add_argument("--variants", default="bf16,compiled,bf16+compiled",
                        help="comma list of bf16, compiled, bf16+compiled (empty: none)")
    parser.add_argument("--quality", action="store_true", help="print the quality/speed table and exit")
    parser.add_argument("--steps", default="10,8,6,5,4", help="--quality: step counts")
    parser.add_argument("--dtypes", default="fp32,bf16,fp16", help="--quality: flow precisions")
    parser.add_argument("--device", default="cpu",
                        help="--quality: torch device (the GPU check: --device cuda --quality --dtypes fp32,bf16,fp16)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))  # the reference driver lives with the tests

    from stepvoice.engine.audio import load_audio
    from stepvoice.engine.token2wav import Token2Wav, default_voice_path
    from stepvoice.engine.token2wav.check import check_token2wav
    from stepvoice.engine.token2wav.fake import write_fake_token2wav
    import token2wav_reference as ref
    from stepvoice.engine.token2wav.quality import snr_db

    folder = Path(args.dir) / args.size
    if check_token2wav(folder):
        print(f"writing a fake {args.size} token2wav folder to {folder} ...", flush=True)
        write_fake_token2wav(folder, args.size)

    ours = Token2Wav.from_dir(folder, dtype="fp32", seed=0)
    assets = default_voice_path().parent
    clip = np.concatenate([load_audio(p) for p in sorted(assets.glob("*.wav"))])[: int(16000 * args.prompt_seconds)]
    voice = ours.prepare_voice(clip)
    codes = [int(c) for c in np.random.default_rng(0).integers(0, 6561, args.codes)]
    audio_s = args.codes / 25
    if args.quality:
        if args.device != "cpu":
            ours = Token2Wav.from_dir(folder, device=args.device, dtype="fp32", seed=0)
        return quality_table(folder, ours, clip, voice, codes, args)
    flow, hift = ref.load_reference(folder, ours.flow.decoder.rand_noise)
    variants = {}
    for name in [v for v in args.variants.split(",") if v]:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r} (choose {', '.join(VARIANTS)})")
        dtype, compiled = VARIANTS[name]
        variants[name] = Token2Wav.from_dir(folder, dtype=dtype, seed=0, compile=compiled)
        if compiled:  # pay the compilation (each cache layout) before anything is timed
            _, t = timed(warm_up, variants[name], voice, codes)
            print(f"{name}: torch.compile warm-up {t:.1f} s", flush=True)
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

    def our_stream(first: int, steps: int | None = None, warm: bool = False, t2w=ours):
        """Ours fed exactly the same plan (the stream keeps the look-ahead codes itself)."""
        if not warm:
            t2w.clear_cache()
        else:
            t2w.stream(voice, first_chunk=first, n_timesteps=steps)  # make sure the start is cached
        t0 = time.perf_counter()
        s = t2w.stream(voice, first_chunk=first, n_timesteps=steps)
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

    def first(runs) -> float:  # stream start + first chunk: median over the repeats
        return statistics.median(r[1] + r[2][0] for r in runs)

    def steady(runs) -> float:  # later chunks (1 s of audio each): per chunk the median repeat
        n = len(runs[0][2])
        later = range(1, n - 1) if n > 2 else range(1, n)
        return sum(statistics.median(r[2][i] for r in runs) for i in later) / max(len(later), 1)

    ref_wav = our_wav = None
    t_ref_off, t_our_off, ref_runs, cold_runs, warm_runs, small_runs, fast_runs = [], [], [], [], [], [], []
    var = {name: {"off": [], "cold": [], "warm": [], "small": [], "wav": None} for name in variants}
    for _ in range(args.repeat):  # alternate reference, ours and the variants so that all see the same load
        ref_wav, t = timed(ref_offline)
        t_ref_off.append(t)
        our_wav, t = timed(ours.synthesize, codes, voice)
        t_our_off.append(t)
        for name, t2w in variants.items():
            var[name]["wav"], t = timed(t2w.synthesize, codes, voice)
            var[name]["off"].append(t)
        ref_runs.append(ref_stream())
        cold_runs.append(our_stream(25))
        for name, t2w in variants.items():
            var[name]["cold"].append(our_stream(25, t2w=t2w))
        ref_runs.append(ref_stream())
        warm_runs.append(our_stream(25, warm=True))
        small_runs.append(our_stream(args.small_first, warm=True))
        fast_runs.append(our_stream(25, args.fast_steps, warm=True))
        for name, t2w in variants.items():
            var[name]["warm"].append(our_stream(25, warm=True, t2w=t2w))
            var[name]["small"].append(our_stream(args.small_first, warm=True, t2w=t2w))
    t_ref_off, t_our_off = statistics.median(t_ref_off), statistics.median(t_our_off)
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
    for name, m in var.items():
        rows += [
            (f"[{name}] offline RTF", t_ref_off / audio_s, statistics.median(m["off"]) / audio_s),
            (f"[{name}] first chunk s (cold)", ref_first, first(m["cold"])),
            (f"[{name}] first chunk s (voice used before)", ref_first, first(m["warm"])),
            (f"[{name}] first chunk s (voice used before, first_chunk={args.small_first})", ref_first, first(m["small"])),
            (f"[{name}] steady streaming RTF", steady(ref_runs), steady(m["warm"])),
        ]
    print(f"\n{'measure':<62}{'reference':>11}{'ours':>9}{'speedup':>9}")
    for name, r, o in rows:
        print(f"{name:<62}{r:>11.3f}{o:>9.3f}{r / o:>8.2f}x")
    print(f"\noffline waveform max |ours - reference| = {off_diff:.2e}; streamed chunks: "
          f"{'same sizes' if same_sizes else 'DIFFERENT sizes'}, max |diff| = {stream_diff:.2e}")
    for name, m in var.items():
        print(f"[{name}] offline waveform vs our fp32: SNR {snr_db(our_wav, m['wav']):.1f} dB")
    return 0


VARIANTS = {"bf16": ("bf16", False), "compiled": ("fp32", True), "bf16+compiled": ("bf16", True)}


def warm_up(t2w, voice, codes) -> None:
    """One offline synthesis and one stream (start + a chunk + the end): every cache layout the
    timed runs use, so torch.compile has compiled them all."""
    t2w.synthesize(codes[:30], voice)
    t2w.clear_cache()
    s = t2w.stream(voice, first_chunk=25)
    s.push(codes[:60])
    s.finish()


def quality_table(folder: Path, ours, clip: np.ndarray, voice, codes: list[int], args) -> int:
    """Precision x steps against fp32 10 steps: mel |diff|, waveform SNR, speaker similarity, RTF."""
    from stepvoice.engine.audio import resample
    from stepvoice.engine.token2wav import Token2Wav
    from stepvoice.engine.token2wav.quality import agreement
    from stepvoice.retrieval.speaker_embedder import load_speaker_embedder

    embedder = load_speaker_embedder("dvector")
    prompt_vec = embedder.embed(clip)

    def vector(wav24: np.ndarray) -> np.ndarray:
        return embedder.embed(resample(wav24.astype(np.float32), 24000, 16000))

    audio_s = len(codes) / 25
    ours.n_timesteps = 10
    ref_mel = ours.mel(codes, voice)
    ref_wav = ours.vocode(ref_mel)
    ref_vec = vector(ref_wav)
    print(f"embedder {embedder.name}; fp32 10 steps: similarity to the prompt {float(ref_vec @ prompt_vec):.3f}")
    print(f"\n{'flow':<6}{'steps':>6}{'mel mean|d|':>13}{'mel max|d|':>12}{'SNR dB':>9}"
          f"{'sim prompt':>12}{'sim fp32':>10}{'flow RTF':>10}")
    for name in [d for d in args.dtypes.split(",") if d]:
        t2w = ours if name == "fp32" else Token2Wav.from_dir(folder, device=args.device, dtype=name, seed=0)
        for steps in [int(x) for x in args.steps.split(",") if x]:
            t2w.n_timesteps = steps
            mel, t = timed(t2w.mel, codes, voice)
            wav = t2w.vocode(mel)
            a = agreement(ref_mel, ref_wav, mel, wav)
            vec = vector(wav)
            print(f"{name:<6}{steps:>6}{a.mel_mean:>13.4f}{a.mel_max:>12.3f}{a.snr_db:>9.1f}"
                  f"{float(vec @ prompt_vec):>12.3f}{float(vec @ ref_vec):>10.4f}{t / audio_s:>10.2f}", flush=True)
        t2w.n_timesteps = 10
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
