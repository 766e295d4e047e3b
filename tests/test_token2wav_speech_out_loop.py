"""SpeechOut never blocks the event loop: a cold voice's first reply and a voice switch with the
fake `small` token2wav (its stream start, the prompt through the flow, takes seconds on a CPU)."""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from stepvoice.assistant.speech_out import SpeechOut
from stepvoice.engine.token2wav import Token2Wav, default_voice_path
from stepvoice.engine.token2wav.fake import write_fake_token2wav

SLOW = 0.1  # seconds: a callback longer than this would stall VAD, barge-in and websockets
TICK = 0.02
# The ticker also sees the OS scheduling delay of a shared, loaded CPU (9 agents on 2 cores here);
# the callback detector above holds the 100 ms line, the ticker only catches gross stalls.
TICK_LAG_LIMIT = 0.3


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    t2w = Token2Wav.from_dir(write_fake_token2wav(tmp_path_factory.mktemp("t2w_small"), "small"), seed=0)
    from stepvoice.engine.audio import load_audio

    clip = load_audio(default_voice_path())
    voices = {"a": t2w.prepare_voice(clip[:16000 * 3]), "b": t2w.prepare_voice(clip[16000 * 2:16000 * 5])}
    return t2w, voices


class _SlowCallbacks(logging.Handler):
    """Collects asyncio debug mode's "Executing <...> took N seconds" warnings."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and "took" in message:
            self.seen.append(message)


def _codes(n: int, seed: int) -> list[int]:
    return [int(c) for c in np.random.default_rng(seed).integers(0, 6561, n)]


async def _reply(out: SpeechOut, codes: list[int]) -> int:
    samples = 0
    for i in range(0, len(codes), 6):  # as the model hands them out
        chunk = await out.push(codes[i:i + 6])
        samples += chunk.pcm.size if chunk is not None else 0
    chunk = await out.finish()
    return samples + (chunk.pcm.size if chunk is not None else 0)


async def _scenario(t2w: Token2Wav, voices: dict) -> tuple[list[float], list[int], list[float]]:
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = SLOW
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker():  # how late the loop wakes a sleeper: what a websocket ping would see
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - t - TICK)

    tick = asyncio.create_task(ticker())
    out = SpeechOut(t2w, lambda name: voices[name or "a"], "a")
    starts = []
    t0 = time.perf_counter()
    sizes = [await _reply(out, _codes(30, 1))]  # cold voice: the stream start is computed on first push
    starts.append(time.perf_counter() - t0)
    out.set_voice("b")  # a switch warms "b" in the background; the next reply arrives at once
    t0 = time.perf_counter()
    sizes.append(await _reply(out, _codes(30, 2)))
    starts.append(time.perf_counter() - t0)
    stop.set()
    await tick
    return lags, sizes, starts


def test_cold_first_reply_and_voice_switch_never_block_the_loop(small):
    t2w, voices = small
    t2w.clear_cache()
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        lags, sizes, seconds = asyncio.run(_scenario(t2w, voices), debug=True)
    finally:
        logger.removeHandler(handler)
    assert sizes == [30 * 960, 30 * 960]  # both replies were fully voiced
    assert min(seconds) > 3 * SLOW  # the work was long enough that running it on the loop would show
    assert handler.seen == [], handler.seen
    assert len(lags) > 10 and max(lags) < TICK_LAG_LIMIT, f"loop lag up to {max(lags):.3f} s"


def test_a_barge_in_while_the_stream_opens_drops_that_stream(small):
    t2w, voices = small
    t2w.clear_cache()

    async def scenario():
        out = SpeechOut(t2w, lambda name: voices[name or "a"], "a")
        pushing = asyncio.create_task(out.push(_codes(20, 3)))
        await asyncio.sleep(0.05)  # the stream start is being computed in its thread
        out.abort()
        first = await pushing
        later = await _reply(out, _codes(30, 4))  # the next segment gets a fresh stream
        return first, later, out.error

    first, later, error = asyncio.run(scenario())
    assert first is None and error is None
    assert later == 30 * 960
