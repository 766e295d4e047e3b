"""Voice-loop latency: the pipeline's own overhead from end of speech to first PCM.

Runs N spoken turns through the real loop (Silero VAD, endpointer, Session,
speech-out thread hop, playback queue) on the in-process audio backend, with the
scripted engine (zero model time) and a zero-time synthesizer, and prints the
medians of each trace mark after the endpoint. The VAD hangover (the silence
the endpointer waits for) is listed on its own: it is a setting, not overhead.
With --token2wav DIR the synthesizer is a real Token2Wav folder instead (e.g.
a fake one from `stepvoice model fake`), to see what synthesis adds. With
--model DIR the same trace runs end to end on a real engine (a checkpoint
folder, e.g. a fake one of real size on a CUDA machine) and its token2wav/.

    .venv/bin/python bench/voice_latency.py [--turns 20] [--speed 2] [--token2wav DIR]
        [--model DIR --device cuda --max-new-tokens 64]
    .venv/bin/python bench/voice_latency.py --speculation [--utterances 20] [--model-ms 300]

--speculation prints the speculative-reply table instead: end of speech ->
first PCM with speculation on vs off (issue #12), over scripted utterances of
which every other one has a mid-sentence pause longer than the speculation
pause (so it starts a speculation that is discarded), on an engine that takes
`--model-ms` before its first token; each utterance runs with speculation off
and on, in alternating order, in real time.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from stepvoice.assistant.audio_io.inprocess import InProcessAudio
from stepvoice.assistant.endpointing import EndpointConfig
from stepvoice.assistant.session import Session
from stepvoice.assistant.vad import FRAME, SileroVAD
from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
from stepvoice.engine.backends.scripted import ScriptedBackend

SENTENCES = ["What is the weather like today?", "Tell me a joke.", "How far is the moon?",
             "Play some music please.", "What time is it in Tokyo?"]


class ZeroTimeToken2Wav:
    """Synthesis that costs nothing: 40 ms of low tone per code."""

    sample_rate = 24000

    def prepare_voice(self, wav):  # noqa: ANN001
        return None

    def stream(self, voice, first_chunk: int = 25):  # noqa: ANN001
        return self

    def push(self, codes) -> np.ndarray:  # noqa: ANN001
        n = 960 * len(codes)
        return (0.1 * np.sin(np.arange(n) * 2 * np.pi * 220 / 24000)).astype(np.float32)

    def finish(self) -> np.ndarray:
        return np.zeros(0, np.float32)


def speech(text: str) -> np.ndarray:
    import soundfile as sf
    import soxr

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed (apt install espeak-ng)")
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["espeak-ng", "-w", f"{d}/s.wav", text], check=True)
        x, sr = sf.read(f"{d}/s.wav", dtype="float32", always_2d=True)
    return soxr.resample(x[:, 0], sr, 16000).astype(np.float32)


async def run_turns(turns: int, speed: float, silence_ms: float, token2wav, backend=None,  # noqa: ANN001
                    generation: dict | None = None) -> VoiceLoop:
    if backend is None:
        replies = [{"text": "Sure, here it is.", "speech_codes": list(range(25))} for _ in range(turns)]
        backend = ScriptedBackend.from_data({"replies": replies})
    session = Session(backend, token2wav=token2wav, generation=generation)
    await asyncio.to_thread(session.voice_prompt)  # as `stepvoice chat` does before listening
    audio = InProcessAudio([np.zeros(8000, np.float32)], speed=speed)
    loop = VoiceLoop(session, audio, out=io.StringIO(),
                     config=VoiceLoopConfig(endpoint=EndpointConfig(silence_ms=silence_ms)))
    clips = [speech(s) for s in SENTENCES]

    async def user() -> None:
        for i in range(turns):
            audio.feed(clips[i % len(clips)])
            while len(loop.traces) <= i or loop.traces[i].done is None:
                await asyncio.sleep(0.01)
            await asyncio.sleep((loop.config.echo_guard_ms + 100) / 1000 / speed)

    feeder = asyncio.create_task(user())
    await loop.run(max_turns=turns)
    await feeder
    return loop


def vad_frame_cost(n: int = 500) -> float:
    vad = SileroVAD()
    x = np.random.default_rng(0).standard_normal(FRAME * n).astype(np.float32) * 0.01
    t = time.perf_counter()
    vad.probabilities(x)
    return (time.perf_counter() - t) / n * 1000


def table(name: str, loop: VoiceLoop) -> float:
    """Prints the medians over the warm turns (the first turn is shown apart)."""
    cold, warm = loop.traces[0], loop.traces[1:]
    rows = [t.since_endpoint_ms() for t in warm if t.complete]
    print(f"\n{name}: {len(rows)} warm turns complete of {len(warm)}")
    print(f"  {'mark (ms after the endpoint)':38s} {'median':>8s} {'p90':>8s} {'max':>8s} {'turn 1':>8s}")
    first = cold.since_endpoint_ms()
    for key, label in (("hangover", "VAD hangover (setting, listed apart)"), ("first_token", "first token"),
                       ("first_code", "first speech code"), ("first_pcm", "first PCM"),
                       ("playback_start", "playback start")):
        v = sorted(r[key] for r in rows)
        p90 = v[min(len(v) - 1, int(0.9 * len(v)))]
        print(f"  {label:38s} {statistics.median(v):8.1f} {p90:8.1f} {max(v):8.1f} {first[key] or 0:8.1f}")
    return statistics.median(r["first_pcm"] for r in rows)


class TimedModel:
    """An engine with model time: `prefill_s` before the first token, then 25 codes (the same for every
    request, so a discarded speculation uses up nothing). Counts the tokens it generates."""

    def __init__(self, prefill_s: float):
        self.prefill_s = prefill_s

    async def generate(self, messages, options, cancel=None):  # noqa: ANN001
        from stepvoice.engine.events import SpeechCodes, TextDelta, TurnEnd, Usage

        await asyncio.sleep(self.prefill_s)
        yield TextDelta("Sure. ", "speech")
        for i in range(0, 25, 5):
            if cancel is not None and cancel.is_set():
                yield TurnEnd("cancelled", Usage(completion_tokens=i + 1))
                return
            await asyncio.sleep(0.01)
            yield SpeechCodes(tuple(range(i, i + 5)))
        yield TurnEnd("stop", Usage(completion_tokens=26))


async def one_utterance(clips: list[np.ndarray], speculate: bool, model_s: float, vad) -> VoiceLoop:  # noqa: ANN001
    session = Session(TimedModel(model_s), token2wav=ZeroTimeToken2Wav())
    audio = InProcessAudio([np.zeros(8000, np.float32), *clips], speed=1.0, finite=True, tail_s=1.5)
    loop = VoiceLoop(session, audio, out=io.StringIO(), vad=vad,
                     config=VoiceLoopConfig(endpoint=EndpointConfig(silence_ms=500.0), speculate=speculate,
                                            speculate_pause_ms=200.0))
    await loop.run(max_turns=1)
    return loop


def trimmed(x: np.ndarray) -> np.ndarray:
    """Without espeak-ng's leading and trailing silence (so the inserted pause is the pause)."""
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0]: loud[-1] + 1] if loud.size else x


def speculation_table(utterances: int, model_ms: float) -> None:
    vad = SileroVAD()
    pause = np.zeros(int(0.35 * 16000), np.float32)  # longer than the 200 ms speculation pause
    firsts = {True: [], False: []}
    stats = {"committed": 0, "discarded": 0, "tokens": 0, "seconds": 0.0}
    for i in range(utterances):
        words = SENTENCES[i % len(SENTENCES)].split()
        if i % 2:  # a mid-sentence pause: the user goes on after it
            half = len(words) // 2
            clips = [trimmed(speech(" ".join(words[:half]))), pause, trimmed(speech(" ".join(words[half:])))]
        else:
            clips = [speech(" ".join(words))]
        for speculate in ((False, True) if i % 4 < 2 else (True, False)):  # A B / B A
            loop = asyncio.run(one_utterance(clips, speculate, model_ms / 1000, vad))
            t = loop.traces[0]
            firsts[speculate].append((t.first_pcm - t.speech_end) * 1000)
            if speculate:
                sp = loop.speculation
                stats["committed"] += sp.committed
                stats["discarded"] += sp.discarded
                stats["tokens"] += sp.discarded_tokens
                stats["seconds"] += sp.discarded_s
    print(f"\nspeculative replies: {utterances} utterances (every other one with a 350 ms mid-sentence pause), "
          f"engine {model_ms:g} ms to first token, hangover 500 ms, speculation pause 200 ms, real time")
    print(f"  {'end of speech -> first PCM (ms)':34s} {'median':>8s} {'p90':>8s} {'max':>8s}")
    for speculate, label in ((False, "speculation off"), (True, "speculation on")):
        v = sorted(firsts[speculate])
        print(f"  {label:34s} {statistics.median(v):8.1f} {v[min(len(v) - 1, int(0.9 * len(v)))]:8.1f} {max(v):8.1f}")
    starts = stats["committed"] + stats["discarded"]
    print(f"  speculative starts: {starts}, committed {stats['committed']} ({100 * stats['committed'] / max(1, starts):.0f}%), "
          f"discarded {stats['discarded']}")
    print(f"  compute spent on discarded starts: {stats['tokens']} tokens, {stats['seconds']:.2f} s of engine time "
          f"({stats['seconds'] / max(1, stats['discarded']) * 1000:.0f} ms per discard)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20, help="warm turns measured (one cold turn is added)")
    ap.add_argument("--speed", type=float, default=2.0, help="in-process clock speed (1 = real time)")
    ap.add_argument("--silence-ms", type=float, default=500.0)
    ap.add_argument("--token2wav", type=Path, help="also run with this Token2Wav folder")
    ap.add_argument("--model", type=Path, help="also run end to end with this checkpoint folder (and its token2wav/)")
    ap.add_argument("--device", default=None, help="device for --model (default: best available)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="per reply, for --model")
    ap.add_argument("--speculation", action="store_true", help="print the speculation table (on vs off) only")
    ap.add_argument("--utterances", type=int, default=20, help="for --speculation")
    ap.add_argument("--model-ms", type=float, default=300.0, help="for --speculation: engine time to first token")
    args = ap.parse_args()
    if args.speculation:
        speculation_table(args.utterances, args.model_ms)
        return
    print(f"Silero VAD: {vad_frame_cost():.3f} ms per 32 ms frame (one thread)")
    print(f"in-process audio blocks of 32 ms at speed {args.speed:g}: playback start waits for the next block")
    loop = asyncio.run(run_turns(args.turns + 1, args.speed, args.silence_ms, ZeroTimeToken2Wav()))
    first_pcm = table("scripted engine, zero-time synthesis", loop)
    print(f"\npipeline overhead, end of speech (endpoint) -> first PCM: median {first_pcm:.1f} ms (goal <= 50 ms)")
    if args.token2wav:
        from stepvoice.engine.token2wav import Token2Wav

        t2w = Token2Wav.from_dir(args.token2wav)
        loop = asyncio.run(run_turns(args.turns + 1, args.speed, args.silence_ms, t2w))
        table(f"scripted engine, Token2Wav {args.token2wav}", loop)
    if args.model:
        from stepvoice.engine.backends import load_backend
        from stepvoice.engine.token2wav import Token2Wav

        kwargs = {"device": args.device} if args.device else {}
        backend = load_backend(str(args.model), **kwargs)
        t2w = Token2Wav.from_dir(args.model / "token2wav", device=args.device or "cpu")
        loop = asyncio.run(run_turns(args.turns + 1, args.speed, args.silence_ms, t2w, backend,
                                     {"max_new_tokens": args.max_new_tokens, "temperature": 1.0}))
        table(f"end to end: {args.model} on {args.device or 'default device'}", loop)


if __name__ == "__main__":
    main()
