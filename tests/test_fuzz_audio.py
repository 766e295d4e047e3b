"""Fuzz: 50+ malformed audio files through `ask --audio` and the voice loop's input path: one clear error
line each (exit 1), never a traceback, and a normal question works afterwards."""
from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest
import soundfile as sf

from stepvoice.assistant.cli import main

SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus")


def wav_header(rate: int, channels: int, bits: int, data_len: int, fmt: int = 1) -> bytes:
    byte_rate = rate * channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate,
                                                                                    byte_rate, channels * bits // 8, bits)
            + b"data" + struct.pack("<I", data_len))


def malformed_files(folder, n: int = 55) -> list:
    rng = random.Random(7)
    good = io.BytesIO()
    sf.write(good, np.sin(np.arange(16000) / 10).astype(np.float32) * 0.3, 16000, format="WAV")
    good_bytes = good.getvalue()
    flac = io.BytesIO()
    sf.write(flac, np.zeros(8000, np.float32), 16000, format="FLAC")
    made = []
    for i in range(n):
        k = i % 11
        if k == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 4000)))  # noise bytes
        elif k == 1:
            data = good_bytes[: rng.randrange(1, 44)]  # header cut short
        elif k == 2:
            data = wav_header(0, 1, 16, 100) + b"\0" * 100  # zero sample rate
        elif k == 3:
            data = wav_header(16000, 0, 16, 100) + b"\0" * 100  # zero channels
        elif k == 4:
            data = wav_header(16000, 1, 16, 2**31) + b"\0" * 10  # claims 2 GB of data
        elif k == 5:
            data = wav_header(16000, 1, 32, 64, fmt=3) + np.full(16, np.nan, "<f4").tobytes()  # NaN floats
        elif k == 6:
            data = wav_header(16000, 1, 16, 0)  # no samples
        elif k == 7:
            data = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(rng.randrange(256) for _ in range(2000))  # fake mp3
        elif k == 8:
            data = flac.getvalue()[: rng.randrange(4, 60)]  # truncated flac
        elif k == 9:
            data = ("this is not audio " * 50).encode()
        else:
            data = wav_header(16000, 1, 16, 20) + b"\x01\x02" * 10  # 10 samples: too short for the model
        path = folder / f"bad{i:02d}{SUFFIXES[i % len(SUFFIXES)]}"
        path.write_bytes(data)
        made.append(path)
    return made


def test_malformed_audio_files_through_ask(home, tmp_path, capsys):
    script = tmp_path / "script.yaml"
    script.write_text("replies:\n  - text: heard you\n")
    files = malformed_files(tmp_path)
    answered = 0
    for path in files:
        rc = main(["ask", "--model", f"scripted:{script}", "--audio", str(path), "--no-tools"])
        out, err = capsys.readouterr()
        lines = [l for l in err.splitlines() if l.strip()]
        if rc == 0:  # a file that decodes to some valid audio is simply answered
            answered += 1
            assert "heard you" in out
            continue
        assert rc == 1, (path, rc, err)
        assert "Traceback" not in err, err
        assert len(lines) == 1 and path.name in lines[0], (path.name, err)
    assert answered < len(files) // 5
    rc = main(["ask", "--model", f"scripted:{script}", "--text", "still there?", "--no-tools"])
    out, _ = capsys.readouterr()
    assert rc == 0 and "heard you" in out


def test_malformed_audio_into_a_session_turn_is_one_error_and_the_session_goes_on(tmp_path):
    """What the voice loop hands the session: arrays from a broken device or decoder."""
    import asyncio

    from stepvoice.assistant.session import Session
    from stepvoice.engine.backends.scripted import ScriptedBackend
    from stepvoice.engine.errors import StepvoiceError
    from stepvoice.engine.events import TextDelta

    backend = ScriptedBackend.from_data({"replies": [{"text": "fine"}] * 60})
    session = Session(backend)
    rng = np.random.default_rng(3)
    bad = [np.full(16000, np.nan, np.float32), np.full(16000, np.inf, np.float32), np.zeros(0, np.float32),
           np.zeros(5, np.float32), np.zeros((2, 3, 4), np.float32), rng.standard_normal(16000).astype(np.float64) * 1e30,
           np.array(["a", "b"]), np.zeros(16000, np.complex64)]

    async def go():
        errors = 0
        for samples in bad * 7:  # 56 inputs
            try:
                async for _ in session.respond(samples):
                    pass
            except StepvoiceError as e:
                assert str(e) and "\n" not in str(e)
                errors += 1
        reply = "".join([e.text async for e in session.respond("hello") if isinstance(e, TextDelta)])
        return errors, reply

    errors, reply = asyncio.run(go())
    assert errors >= 40 and reply == "fine"
