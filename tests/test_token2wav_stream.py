"""Streams: independence, chunking, first-chunk size, lifecycle."""
from __future__ import annotations

import numpy as np
import pytest

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.token2wav import SAMPLE_RATE, SpeechCodeError, Token2Wav, default_voice_path
from stepvoice.engine.token2wav.stream import MEL_OVERLAP

SAMPLES_PER_CODE = SAMPLE_RATE // 25
HELD_BACK = MEL_OVERLAP * 480  # the cross-fade tail a chunk keeps until the next one


@pytest.fixture(scope="module")
def t2w(fake_token2wav):
    return Token2Wav.from_dir(fake_token2wav, dtype="fp32", seed=1)


@pytest.fixture(scope="module")
def voices(t2w, espeak_wav):
    a = t2w.prepare_voice(default_voice_path())
    b = t2w.prepare_voice(espeak_wav("Hello there, this is another voice.", voice="en-us+m3", pitch=25))
    return a, b


def _codes(n: int, seed: int) -> list[int]:
    return [int(c) for c in np.random.default_rng(seed).integers(0, 6561, n)]


def _run(stream, codes: list[int], step: int) -> list[np.ndarray]:
    out = [stream.push(codes[i:i + step]) for i in range(0, len(codes), step)]
    return out + [stream.finish()]


def test_interleaved_streams_with_different_voices_equal_each_alone(t2w, voices):
    codes_a, codes_b = _codes(70, 1), _codes(58, 2)
    alone_a = np.concatenate(_run(t2w.stream(voices[0]), codes_a, 9))
    alone_b = np.concatenate(_run(t2w.stream(voices[1]), codes_b, 9))
    sa, sb = t2w.stream(voices[0]), t2w.stream(voices[1])
    got_a, got_b = [], []
    for i in range(0, 70, 9):  # alternate pushes, one stream then the other
        got_a.append(sa.push(codes_a[i:i + 9]))
        got_b.append(sb.push(codes_b[i:i + 9]))
    got_b.append(sb.finish())
    got_a.append(sa.finish())
    assert np.array_equal(np.concatenate(got_a), alone_a)
    assert np.array_equal(np.concatenate(got_b), alone_b)
    assert not np.allclose(alone_a[:20000], alone_b[:20000])


def test_output_does_not_depend_on_how_codes_are_pushed(t2w, voices):
    codes = _codes(64, 3)
    one = _run(t2w.stream(voices[0]), codes, 64)
    many = _run(t2w.stream(voices[0]), codes, 5)
    assert np.array_equal(np.concatenate(one), np.concatenate(many))
    assert sum(x.size for x in one) == 64 * SAMPLES_PER_CODE


def test_chunks_are_released_as_soon_as_their_look_ahead_arrives(t2w, voices):
    s = t2w.stream(voices[0], first_chunk=8, chunk=25)
    assert s.push(_codes(10, 4)).size == 0  # 8 codes + 3 look-ahead not yet complete
    first = s.push([7])
    assert first.size == 8 * SAMPLES_PER_CODE - HELD_BACK
    assert s.push(_codes(24, 5)).size == 0
    second = s.push([9])  # 8 + 25 + 3 codes in: the second chunk completes
    assert second.size == 25 * SAMPLES_PER_CODE
    rest = s.finish()
    assert first.size + second.size + rest.size == 36 * SAMPLES_PER_CODE


def test_stream_lifecycle_and_bad_input(t2w, voices):
    s = t2w.stream(voices[0])
    assert s.finish().size == 0  # nothing pushed: nothing to say
    with pytest.raises(StepvoiceError, match="finished"):
        s.push([1, 2, 3])
    s = t2w.stream(voices[0])
    with pytest.raises(SpeechCodeError, match="6561 at position 1"):
        s.push([5, 6561])
    assert s.push([1, 2]).size == 0  # the bad push added nothing; the stream goes on
    assert s.finish().size == 2 * SAMPLES_PER_CODE
    with pytest.raises(StepvoiceError, match="at least"):
        t2w.stream(voices[0], first_chunk=2)


def test_fewer_timesteps_is_a_quality_knob(t2w, voices):
    codes = _codes(40, 6)
    full = np.concatenate(_run(t2w.stream(voices[0]), codes, 40))
    fast = np.concatenate(_run(t2w.stream(voices[0], n_timesteps=4), codes, 40))
    assert full.shape == fast.shape
    assert not np.allclose(full, fast)


def test_offline_api_shapes(t2w, voices):
    codes = _codes(33, 7)
    mel = t2w.mel(codes, voices[0])
    wav = t2w.synthesize(codes, voices[0])
    assert mel.shape == (80, 66) and mel.dtype == np.float32
    assert wav.shape == (33 * SAMPLES_PER_CODE,) and wav.dtype == np.float32
    assert np.array_equal(wav, t2w.synthesize(codes, voices[0]))  # reproducible
    assert np.abs(wav).max() <= 0.99


def test_lower_precision_runs_and_stays_close(fake_token2wav, t2w, voices):
    half = Token2Wav.from_dir(fake_token2wav, dtype="bf16", seed=1)
    codes = _codes(30, 8)
    full_mel, half_mel = t2w.mel(codes, voices[0]), half.mel(codes, voices[0])
    assert half_mel.dtype == np.float32 and half_mel.shape == full_mel.shape
    assert 0 < np.abs(full_mel - half_mel).max() < 0.05 * np.abs(full_mel).max()
    s = half.stream(voices[0])
    assert np.concatenate([s.push(codes), s.finish()]).size == 30 * SAMPLES_PER_CODE


def test_bad_device_dtype_and_mel_are_clear_errors(fake_token2wav, t2w):
    with pytest.raises(StepvoiceError, match="unknown device"):
        Token2Wav.from_dir(fake_token2wav, device="warp-drive")
    with pytest.raises(StepvoiceError, match="unknown dtype"):
        Token2Wav.from_dir(fake_token2wav, dtype="fp7")
    with pytest.raises(StepvoiceError, match=r"\[80, T>0\]"):
        t2w.vocode(np.zeros((81, 10), np.float32))


def test_warm_caches_the_stream_start_per_voice(fake_token2wav, voices):
    t2w = Token2Wav.from_dir(fake_token2wav, seed=1)
    codes = _codes(40, 9)
    cold = np.concatenate(_run(t2w.stream(voices[1]), codes, 40))
    t2w.clear_cache()
    t2w.warm(voices[1])
    calls = []
    original = t2w.flow.setup_cache
    t2w.flow.setup_cache = lambda *a, **k: calls.append(1) or original(*a, **k)
    warm = np.concatenate(_run(t2w.stream(voices[1]), codes, 40))
    assert calls == []  # the start came from the cache
    assert np.array_equal(cold, warm)  # and gives the same audio
    t2w.stream(voices[1], n_timesteps=3)
    assert calls == [1]  # another step count is another start


def test_a_stream_opened_while_warm_runs_waits_for_it_instead_of_computing_again(fake_token2wav, voices):
    import threading
    import time

    t2w = Token2Wav.from_dir(fake_token2wav, seed=1)
    calls = []
    original = t2w.flow.setup_cache

    def slow_setup(*a, **k):
        calls.append(1)
        time.sleep(0.3)  # long enough for the stream below to arrive meanwhile
        return original(*a, **k)

    t2w.flow.setup_cache = slow_setup
    warming = threading.Thread(target=t2w.warm, args=(voices[0],))
    warming.start()
    time.sleep(0.05)
    s = t2w.stream(voices[0])
    warming.join()
    assert calls == [1]
    assert s.push(_codes(30, 2)).size > 0
