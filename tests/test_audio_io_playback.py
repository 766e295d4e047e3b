"""The playback queue: resampling to the device rate without seams, stop semantics, played count."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from stepvoice.assistant.audio_io.playback import PlaybackQueue
from stepvoice.engine.errors import AudioError
from voice_loop_support import tone


def test_chunks_resampled_to_the_device_rate_join_without_seams():
    q = PlaybackQueue(48000)
    x = tone(1.0, 440, sr=24000)
    for i in range(0, len(x), 1000):  # odd chunk sizes, as token2wav hands them out
        q.put(x[i:i + 1000], 24000)
    q.end_of_stream()
    assert q.pending == pytest.approx(48000, abs=4)
    y = np.concatenate([q.read(960) for _ in range(51)])
    ref = tone(1.0, 440, sr=48000)
    n = min(len(ref), int(q.played))
    # the same sine at 48 kHz (soxr's delay is compensated by the streaming resampler)
    assert np.max(np.abs(y[200:n - 200] - ref[200:n - 200])) < 0.01
    assert q.pending == 0 and np.all(y[q.played:] == 0)


def test_read_gives_silence_when_empty_and_counts_only_queued_samples():
    q = PlaybackQueue(24000, clock=lambda: 12.5)
    assert np.all(q.read(100) == 0) and q.played == 0 and q.first_read_at is None
    q.put(np.ones(150, np.float32), 24000)
    q.mark()
    a = q.read(100)
    b = q.read(100)
    assert a.sum() == 100 and b.sum() == 50 and q.played == 150 and q.played_since_mark == 150
    assert q.first_read_at == 12.5


def test_stop_drops_everything_not_handed_out_and_reports_played():
    q = PlaybackQueue(24000)
    q.mark()
    q.put(np.ones(24000, np.float32), 24000)
    q.read(480)
    assert q.stop() == 480
    assert q.pending == 0 and np.all(q.read(480) == 0)
    q.put(np.ones(10, np.float32), 24000)  # usable again after a stop
    assert q.read(20).sum() == 10


def test_read_into_a_device_buffer_and_clip():
    q = PlaybackQueue(16000)
    q.put(np.array([2.0, -3.0, 0.5], np.float32), 16000)
    out = np.full(5, 7.0, np.float32)
    q.read(5, out)
    assert out.tolist() == [1.0, -1.0, 0.5, 0.0, 0.0]


def test_producer_and_consumer_threads():
    q = PlaybackQueue(24000)
    total = 200 * 480

    def produce():
        for _ in range(200):
            q.put(np.ones(480, np.float32), 24000)

    t = threading.Thread(target=produce)
    t.start()
    got = 0.0
    while got < total:
        got += float(q.read(333).sum())
    t.join()
    assert got == total and q.played == total


def test_bad_rate():
    with pytest.raises(AudioError):
        PlaybackQueue(0)
