"""Child process of tests/test_audio_io_portaudio.py: runs the voice loop through the real
PortAudio path (sounddevice -> ALSA) on virtual devices the test configured in $HOME/.asoundrc.

The ALSA `file` plugin reads the capture stream from a FIFO and writes the playback
stream into another; threads here feed the "microphone" FIFO and drain the
"speaker" FIFO at real-time pace (that is what paces the otherwise clock-less
null devices). Prints one JSON object with what happened.

Usage: python audio_io_portaudio_child.py SCENARIO MIC_FIFO SPK_FIFO MIC_RATE SPK_RATE
"""
from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import sys
import threading
import time
from collections import deque

import numpy as np
import soxr

F_SETPIPE_SZ = 1031  # Linux fcntl: a small pipe keeps the virtual devices' latency low
CHUNK_S = 0.02


class MicFeeder(threading.Thread):
    """Writes 16-bit PCM into the mic FIFO in real time: queued audio, else silence."""

    def __init__(self, path: str, rate: int):
        super().__init__(daemon=True)
        self.path, self.rate = path, rate
        self.queue: deque[np.ndarray] = deque()
        self.lock = threading.Lock()
        self.fed_speech_at: list[float] = []

    def say(self, samples16k: np.ndarray) -> None:
        x = soxr.resample(samples16k, 16000, self.rate).astype(np.float32)
        with self.lock:
            self.queue.append(x)

    def _next(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        filled = 0
        with self.lock:
            while filled < n and self.queue:
                head = self.queue[0]
                take = min(n - filled, head.size)
                out[filled:filled + take] = head[:take]
                filled += take
                if take == head.size:
                    self.queue.popleft()
                else:
                    self.queue[0] = head[take:]
        return out

    def run(self) -> None:
        n = int(self.rate * CHUNK_S)
        while True:  # ALSA may open and close the FIFO more than once: reopen each time
            fd = os.open(self.path, os.O_WRONLY)
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)
            except OSError:
                pass
            t = time.perf_counter()
            try:
                while True:
                    os.write(fd, (np.clip(self._next(n), -1, 1) * 32767).astype("<i2").tobytes())
                    t += CHUNK_S
                    time.sleep(max(0.0, t - time.perf_counter()))
            except BrokenPipeError:
                pass
            finally:
                os.close(fd)


class SpeakerDrain(threading.Thread):
    """Reads what PortAudio played out of the speaker FIFO, at real-time pace."""

    def __init__(self, path: str, rate: int):
        super().__init__(daemon=True)
        self.path, self.rate = path, rate
        self.chunks: list[bytes] = []

    def run(self) -> None:
        nbytes = int(self.rate * CHUNK_S) * 2
        while True:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)
            except OSError:
                pass
            t = time.perf_counter()
            while True:
                b = os.read(fd, nbytes)
                if not b:
                    break
                self.chunks.append(b)
                t += CHUNK_S
                time.sleep(max(0.0, t - time.perf_counter()))
            os.close(fd)

    def wait_idle(self, quiet_s: float = 0.5, limit_s: float = 10.0) -> None:
        """Until nothing new came out of the FIFO for `quiet_s`: on a loaded machine the
        drain lags behind what PortAudio already wrote."""
        end = time.perf_counter() + limit_s
        last, since = len(self.chunks), time.perf_counter()
        while time.perf_counter() < end:
            time.sleep(0.05)
            if len(self.chunks) != last:
                last, since = len(self.chunks), time.perf_counter()
            elif time.perf_counter() - since >= quiet_s:
                return

    def audio(self) -> np.ndarray:
        raw = b"".join(self.chunks)
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float32) / 32768


async def scenario(name: str, mic: MicFeeder, spk: SpeakerDrain, result: dict) -> None:
    from stepvoice.assistant.audio_io.portaudio import SoundDeviceAudio
    from stepvoice.assistant.endpointing import EndpointConfig
    from stepvoice.assistant.voice_loop import VoiceLoop, VoiceLoopConfig
    from stepvoice.engine.errors import AudioError
    from voice_loop_support import espeak, make_session, silence

    codes = list(range(300, 350))  # 2 s reply
    session, backend = make_session([{"text": "Hello from the speaker.", "speech_codes": codes},
                                     {"text": "Still here.", "speech_codes": codes[:25]}])
    cfg = VoiceLoopConfig(trace=True, reopen_delay_s=0.2, endpoint=EndpointConfig(silence_ms=320))
    out = io.StringIO()
    if name == "bad-rate":
        audio = SoundDeviceAudio("mic", "spk", input_rate=1)
        try:
            await VoiceLoop(session, audio, out=out, config=cfg).run(max_turns=1)
        except AudioError as e:
            result["error"] = str(e)
        return
    audio = SoundDeviceAudio("mic", "spk")
    loop = VoiceLoop(session, audio, out=out, config=cfg)
    mic.say(np.concatenate([silence(0.5), espeak("Hello, can you hear me?"), silence(0.2)]))

    async def unplug_then_talk() -> None:
        while audio.playback.first_read_at is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        if name == "lost-gone":
            audio.input_spec = "no-such-microphone"  # it will not come back
        audio._in_stream.abort()  # what PortAudio does when the device vanishes
        await asyncio.sleep(1.0)
        mic.say(np.concatenate([espeak("Are you still there?"), silence(0.2)]))

    helper = asyncio.create_task(unplug_then_talk()) if name.startswith("lost") else None
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(loop.run(max_turns=2 if name.startswith("lost") else 1), 40)
    except AudioError as e:
        result["error"] = str(e)
    result["elapsed_s"] = time.perf_counter() - t0
    if helper:
        helper.cancel()
    result["traces"] = [t.to_dict() for t in loop.traces]
    result["loop_errors"] = loop.errors
    result["history_roles"] = [m.role for m in session.history]
    result["requests"] = len(backend.requests)
    result["input"] = audio.input.name if audio.input else None
    result["output"] = audio.output.name if audio.output else None
    result["input_rate"] = audio.input.default_samplerate if audio.input else None
    result["output_rate"] = audio.playback.device_rate
    result["printed"] = out.getvalue()
    result["user_samples"] = [len(m.content[0].samples) for m in session.history if m.role == "human"]


def main() -> None:
    name, mic_path, spk_path, mic_rate, spk_rate = sys.argv[1:6]
    mic, spk = MicFeeder(mic_path, int(mic_rate)), SpeakerDrain(spk_path, int(spk_rate))
    mic.start()
    spk.start()
    result: dict = {}
    asyncio.run(scenario(name, mic, spk, result))
    spk.wait_idle()
    played = spk.audio()
    loud = np.flatnonzero(np.abs(played) > 0.05)
    result["speaker_samples"] = int(played.size)
    result["speaker_loud_s"] = float((loud[-1] - loud[0] + 1) / int(spk_rate)) if loud.size else 0.0
    result["speaker_peak"] = float(np.abs(played).max()) if played.size else 0.0
    print("RESULT " + json.dumps(result, default=str), flush=True)
    os._exit(0)  # the FIFO threads may sit in a blocking open(); nothing to clean up


if __name__ == "__main__":
    main()
