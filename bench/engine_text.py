"""Text-side engine costs, each measured side by side with a naive version in one run.

    .venv/bin/python bench/engine_text.py [--tokens 3000] [--seconds 60]

1. Event decoding of a spoken (TA4) reply: `EventDecoder.push` per token vs
   re-decoding the whole reply after each token and diffing (the simple way
   to avoid broken characters). Prints microseconds per token and the ratio.
2. Log-mel of 25 s pieces: `engine.mel.log_mel` (torch STFT) vs a direct numpy
   framing + rFFT of the same recipe. Prints the real-time factor of each.
3. `build_prompt` for a turn with `--seconds` of audio (mels included).
Uses the fake tokenizer (same code path as the real one).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def numpy_log_mel(x: np.ndarray, filters: np.ndarray) -> np.ndarray:
    x = np.pad(np.concatenate([x, np.zeros(479, np.float32)]), 200, mode="reflect")
    n = 1 + (len(x) - 400) // 160
    idx = np.arange(400)[None, :] + 160 * np.arange(n)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)).astype(np.float32)
    power = np.abs(np.fft.rfft(x[idx] * window, axis=1)[:-1]) ** 2
    logs = np.log10(np.maximum(filters @ power.T, 1e-10))
    return (np.maximum(logs, logs.max() - 8) + 4) / 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=3000)
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()

    from stepvoice.engine.audio import log_mel, mel_filters
    from stepvoice.engine.messages import Audio, Message, Text
    from stepvoice.engine.options import GenerationOptions
    from stepvoice.engine.prompt import build_prompt, ta4_interleave
    from stepvoice.engine.stream_decode import EventDecoder
    from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

    with tempfile.TemporaryDirectory() as d:
        write_fake_tokenizer(d)
        tok = load_tokenizer(d)

    rng = np.random.default_rng(0)
    text = ("长城是中国古代的军事防御工程。The Great Wall is long! 😀 " * 200)
    text_ids = tok.encode(text)[: args.tokens // 5]
    ids = ta4_interleave(text_ids, tok.ids_of_codes(rng.integers(0, 6561, 4 * len(text_ids))), tok)
    ids = ids[: args.tokens] + [tok.tts_end_id]

    def ours():
        dec = EventDecoder(tok, "speech")
        for i in ids:
            dec.push(i)
        dec.finish()

    def naive():
        seen: list[int] = []
        out = ""
        for i in ids:
            seen.append(i)
            full = tok.decode_text(seen)
            if not full.endswith("\ufffd"):
                out = full
        return out

    t_ours, t_naive = timed(ours), timed(naive, 1)
    n = len(ids)
    print(f"event decoding, {n} TA4 tokens: EventDecoder {1e6 * t_ours / n:.1f} us/token, "
          f"re-decode-all {1e6 * t_naive / n:.1f} us/token, ratio {t_naive / t_ours:.1f}x")

    piece = (0.1 * rng.standard_normal(16000 * 25)).astype(np.float32)
    filters = mel_filters()
    t_torch = timed(lambda: log_mel(piece))
    t_numpy = timed(lambda: numpy_log_mel(piece, filters))
    print(f"log-mel of 25 s: torch {1000 * t_torch:.1f} ms (RTF {t_torch / 25:.4f}), "
          f"numpy {1000 * t_numpy:.1f} ms (RTF {t_numpy / 25:.4f}), ratio {t_numpy / t_torch:.2f}x")

    audio = (0.1 * rng.standard_normal(16000 * args.seconds)).astype(np.float32)
    msgs = [Message.text("system", "You are a helpful assistant."), Message("human", [Text("Summarise."), Audio(audio)])]
    t_prompt = timed(lambda: build_prompt(msgs, tok, GenerationOptions()))
    p = build_prompt(msgs, tok, GenerationOptions())
    print(f"build_prompt with {args.seconds} s of audio: {1000 * t_prompt:.1f} ms, {len(p.ids)} ids, {len(p.mels)} pieces")


if __name__ == "__main__":
    main()
