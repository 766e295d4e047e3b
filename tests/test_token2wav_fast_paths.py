"""bf16 and torch.compile paths of token2wav stay within the quality tolerances
(engine.token2wav.quality, set from the README's measured table) of the fp32 eager path,
on the fake `small` token2wav (real widths, fewer layers)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stepvoice.engine.audio import load_audio
from stepvoice.engine.token2wav import Token2Wav, default_voice_path
from stepvoice.engine.token2wav.fake import write_fake_token2wav
from stepvoice.engine.token2wav.quality import MIN_SNR_DB, agreement, snr_db

STEPS = 4  # fewer Euler steps keep the test short; every step runs the same estimator code
COMPILED_MEL_TOL = 1e-3  # compiled vs eager in fp32: float rounding of reordered kernels only


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = write_fake_token2wav(tmp_path_factory.mktemp("t2w_small"), "small")
    fp32 = Token2Wav.from_dir(folder, dtype="fp32", n_timesteps=STEPS, seed=2)
    voice = fp32.prepare_voice(load_audio(default_voice_path())[: 16000 * 2])
    return folder, fp32, voice


def _codes(n: int, seed: int) -> list[int]:
    return [int(c) for c in np.random.default_rng(seed).integers(0, 6561, n)]


def _streamed(t2w: Token2Wav, voice, codes: list[int]) -> np.ndarray:
    t2w.clear_cache()
    s = t2w.stream(voice, first_chunk=10)
    return np.concatenate([s.push(codes[i:i + 8]) for i in range(0, len(codes), 8)] + [s.finish()])


def test_bf16_offline_and_streamed_stay_within_the_tolerance(small):
    folder, fp32, voice = small
    bf16 = Token2Wav.from_dir(folder, dtype="bf16", n_timesteps=STEPS, seed=2)
    assert {p.dtype for p in bf16.flow.parameters()} == {torch.bfloat16}
    codes = _codes(40, 1)
    ref_mel, mel = fp32.mel(codes, voice), bf16.mel(codes, voice)
    got = agreement(ref_mel, fp32.vocode(ref_mel), mel, bf16.vocode(mel))
    assert got.mel_mean > 0  # bf16 really ran
    assert got.within(), got
    assert snr_db(_streamed(fp32, voice, codes), _streamed(bf16, voice, codes)) >= MIN_SNR_DB


def test_compiled_estimator_equals_eager_and_compiles_once_for_all_blocks_and_lengths(small):
    from torch._dynamo.utils import counters

    folder, fp32, voice = small
    torch._dynamo.reset()
    counters.clear()
    compiled = Token2Wav.from_dir(folder, dtype="fp32", n_timesteps=STEPS, seed=2, compile=True)
    assert compiled.compiled
    for n in (24, 37):  # a second length must not compile again (dynamic shapes)
        codes = _codes(n, n)
        ref_mel, mel = fp32.mel(codes, voice), compiled.mel(codes, voice)
        assert np.abs(mel - ref_mel).max() <= COMPILED_MEL_TOL
        assert agreement(ref_mel, fp32.vocode(ref_mel), mel, compiled.vocode(mel)).within()
    # The 4 blocks share one graph (their weights are graph inputs): one compile for a whole utterance.
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
