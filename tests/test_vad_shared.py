"""One Silero model per process: streams (server connections) share the loaded ONNX session but
keep their own state, also when they run at the same time in worker threads."""
from __future__ import annotations

import threading
import time

import numpy as np

from stepvoice.assistant.vad import FRAME, SileroVAD
from voice_loop_support import espeak, silence


def test_streams_share_the_model_and_keep_their_own_state():
    a_audio = np.concatenate([espeak("Hello there, how are you doing today?"), silence(0.5)])
    b_audio = np.concatenate([silence(0.7), espeak("A second speaker talks over here.")])
    n = min(len(a_audio), len(b_audio)) // FRAME
    alone_a, alone_b = SileroVAD().probabilities(a_audio), SileroVAD().probabilities(b_audio)
    a, b = SileroVAD(), SileroVAD()
    assert a._session is b._session  # loaded once
    got: dict[str, list[float]] = {"a": [], "b": []}

    def run(name: str, vad: SileroVAD, audio: np.ndarray) -> None:
        for i in range(n):  # interleaved with the other stream, from two threads
            got[name].append(vad(audio[i * FRAME:(i + 1) * FRAME]))
            time.sleep(0)

    threads = [threading.Thread(target=run, args=("a", a, a_audio)), threading.Thread(target=run, args=("b", b, b_audio))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(got["a"], alone_a[:n], atol=1e-5)
    np.testing.assert_allclose(got["b"], alone_b[:n], atol=1e-5)
    assert max(got["a"]) > 0.5 and max(got["b"]) > 0.5 and abs(np.mean(got["a"]) - np.mean(got["b"])) > 0.01

