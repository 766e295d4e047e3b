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


def test_cpu_bf16_attention_equals_sdpa_also_when_split_by_query_rows(monkeypatch):
    from stepvoice.engine.token2wav import dit

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 8, n, 64, generator=g) for n in (300, 420, 420))
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    with torch.inference_mode():
        whole = dit.attend(q.bfloat16(), k.bfloat16(), v.bfloat16())
        monkeypatch.setattr(dit, "SCORE_BUDGET", 2 * 8 * 420 * 64)  # 64 query rows at a time: 5 pieces
        split = dit.attend(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert whole.dtype == torch.bfloat16 and whole.shape == exact.shape
    assert (whole.float() - exact).abs().max() < 0.02  # bf16 rounding of scores and probabilities
    assert torch.allclose(split.float(), whole.float(), atol=1e-2)
    assert torch.equal(dit.attend(q, k, v), exact)  # fp32 keeps torch's kernel (the parity path)


def test_cpu_bf16_mlp_runs_fc1_and_gelu_as_one_onednn_call(monkeypatch):
    from stepvoice.engine.token2wav import dit

    torch.manual_seed(0)
    mlp = dit.MLP(64, 256).bfloat16()
    x = torch.randn(2, 30, 64).bfloat16()
    calls = []
    real = dit._fused_linear_gelu
    monkeypatch.setattr(dit, "_fused_linear_gelu", lambda *a: calls.append(1) or real(*a))
    with torch.inference_mode():
        fused = mlp(x)
    plain = mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x), approximate="tanh"))
    assert calls and fused.shape == (2, 30, 64)
    assert (fused.float() - plain.float()).abs().max() < 0.05  # where GELU rounds to bf16 differs
    calls.clear()
    mlp(x)  # recording gradients: the plain ops
    assert not calls


def test_compiled_blocks_run_in_bf16(fake_token2wav):
    """torch.compile of the bf16 estimator (the oneDNN GELU call stands aside under compile:
    inductor could not lower it, and every compiled bf16 run failed)."""
    torch._dynamo.reset()
    eager = Token2Wav.from_dir(fake_token2wav, dtype="bf16", n_timesteps=2, seed=2)
    compiled = Token2Wav.from_dir(fake_token2wav, dtype="bf16", n_timesteps=2, seed=2, compile=True)
    voice = eager.prepare_voice(load_audio(default_voice_path())[: 16000 * 2])
    codes = _codes(12, 3)
    a, b = eager.mel(codes, voice), compiled.mel(codes, voice)
    assert a.shape == b.shape and np.abs(a - b).mean() < 0.05
