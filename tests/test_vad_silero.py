"""Silero VAD over onnxruntime, and the endpointer on real (espeak-ng) speech."""
from __future__ import annotations

import numpy as np
import pytest

from stepvoice.assistant.endpointing import EndpointConfig, Endpointer, SpeechDropped, SpeechEnd, SpeechStart
from stepvoice.assistant.vad import FRAME, SileroVAD
from stepvoice.engine.errors import AudioError, ConfigError
from voice_loop_support import SR, espeak, silence, tone


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


def test_speech_frames_score_high_and_silence_low(vad):
    speech = espeak("Hello there, how are you doing today?")
    vad.reset()
    p_sil = vad.probabilities(silence(1.0))
    p_speech = vad.probabilities(speech)
    assert p_sil.max() < 0.2
    assert np.mean(p_speech > 0.5) > 0.6  # most frames of running speech are speech


def test_state_carries_between_frames(vad):
    speech = espeak("state matters")
    vad.reset()
    first = vad.probabilities(speech[: 10 * FRAME])
    vad.reset()
    again = vad.probabilities(speech[: 10 * FRAME])
    np.testing.assert_allclose(first, again, atol=1e-6)  # reset really resets
    # fed after a long stretch of speech the same frame scores differently: the state is used
    vad.reset()
    vad.probabilities(speech)
    assert abs(vad(speech[:FRAME]) - first[0]) > 1e-4


def test_wrong_frame_size_is_a_clear_error(vad):
    with pytest.raises(AudioError, match="512"):
        vad(np.zeros(400, np.float32))


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        SileroVAD(tmp_path / "nope.onnx")


def test_endpointer_finds_one_utterance_with_pre_roll(vad):
    speech = espeak("What is the weather like in Paris today?")
    stream = np.concatenate([silence(1.0), speech, silence(1.2)])
    cfg = EndpointConfig(silence_ms=480, pre_roll_ms=192, tail_ms=96)
    ep = Endpointer(vad, cfg)
    vad.reset()
    events = []
    for i in range(0, len(stream), 700):  # odd block size: frames are rebuilt inside
        events += ep.push(stream[i:i + 700])
    starts = [e for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(starts) == 1 and len(ends) == 1
    end = ends[0]
    # started within two frames of the real onset, ended within the hangover of the real end
    assert abs(starts[0].t - 1.0) <= 2 * FRAME / SR
    speech_end = 1.0 + len(speech) / SR
    assert abs(end.end_t - speech_end) <= 0.2
    assert end.hangover_s == pytest.approx(0.48, abs=FRAME / SR)
    # pre-roll: the utterance begins before the detected start, so the onset is inside it
    onset = int(np.flatnonzero(np.abs(end.samples) > 0.01)[0])
    assert onset >= 0.15 * SR
    # the whole utterance is kept (speech + pre-roll + tail, not the long trailing silence)
    assert len(speech) <= len(end.samples) <= len(speech) + 0.2 * SR + 0.2 * SR + FRAME * 2
    np.testing.assert_allclose(end.samples[onset:onset + 1000], speech[:1000], atol=1e-6)


def test_hangover_setting_controls_splitting(vad):
    a, b = espeak("first part"), espeak("second part")
    stream = np.concatenate([silence(0.5), a, silence(0.4), b, silence(1.0)])

    def count(silence_ms):
        vad.reset()
        ep = Endpointer(vad, EndpointConfig(silence_ms=silence_ms))
        return sum(isinstance(e, SpeechEnd) for e in ep.push(stream))

    assert count(200) == 2  # a 0.4 s pause ends the first utterance
    assert count(700) == 1  # a longer hangover keeps both parts in one


def test_short_burst_is_dropped(vad):
    fake = lambda frame: 0.9 if np.abs(frame).max() > 0.1 else 0.0  # noqa: E731  (deterministic VAD)
    ep = Endpointer(fake, EndpointConfig(min_speech_ms=200, silence_ms=300))
    events = ep.push(np.concatenate([silence(0.3), tone(0.064), silence(0.6)]))
    assert [type(e) for e in events] == [SpeechStart, SpeechDropped]


def test_max_utterance_forces_an_end():
    fake = lambda frame: 0.9  # noqa: E731
    ep = Endpointer(fake, EndpointConfig(max_utterance_s=1.0))
    events = ep.push(tone(2.5))
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(ends) == 2 and all(e.forced for e in ends)
    assert len(ends[0].samples) == pytest.approx(SR, abs=2 * FRAME)


def test_push_to_talk_ignores_the_vad():
    fake = lambda frame: 0.0  # noqa: E731  (the VAD never hears speech)
    ep = Endpointer(fake, EndpointConfig(pre_roll_ms=64))
    ep.push(tone(16 * FRAME / SR))
    start = ep.begin()
    assert start.t == pytest.approx(ep.now)
    ep.push(tone(32 * FRAME / SR, freq=300))
    ep.push(np.ones(100, np.float32))  # a partial frame is kept too
    end = ep.end()
    assert isinstance(end, SpeechEnd) and end.forced
    # pre-roll ring (2 frames of pre-roll + 1 start frame) + everything pushed after begin()
    assert len(end.samples) == 3 * FRAME + 32 * FRAME + 100
    assert end.end_t <= end.detected_t
    assert ep.end() is None


@pytest.mark.parametrize("bad", [dict(threshold=1.5), dict(silence_ms=10), dict(start_frames=0), dict(pre_roll_ms=-1)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ConfigError):
        EndpointConfig(**bad)
