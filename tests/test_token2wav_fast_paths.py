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
    from stepvoice.engine.token2wav import cpu_gemm, dit

    torch.manual_seed(0)
    mlp = dit.MLP(64, 256).bfloat16()
    x = torch.randn(2, 30, 64).bfloat16()
    calls = []
    real = cpu_gemm.linear
    monkeypatch.setattr(cpu_gemm, "linear", lambda *a, **k: calls.append(a[3:4] or k.get("activation")) or real(*a, **k))
    with torch.inference_mode():
        fused = mlp(x)
    plain = mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x), approximate="tanh"))
    assert ("gelu",) in calls and fused.shape == (2, 30, 64)
    assert (fused.float() - plain.float()).abs().max() < 0.05  # where GELU rounds to bf16 differs
    calls.clear()
    mlp(x)  # recording gradients: the plain ops
    assert not calls


def _small_dit(seed: int):
    from stepvoice.engine.token2wav.config import DiTConfig
    from stepvoice.engine.token2wav.dit import DiT

    torch.manual_seed(seed)
    return DiT(DiTConfig(depth=2, num_heads=2, head_dim=32, hidden_size=64)).bfloat16().eval()


def _velocity(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, mu, cond = (torch.randn(2, 80, 37, generator=g).bfloat16() for _ in range(3))
    with torch.inference_mode():
        return model(x, mu, torch.full((2,), 0.3).bfloat16(), torch.randn(2, 80, generator=g).bfloat16(), cond,
                     use_cache=False)[0]


def test_packed_estimator_weights_give_the_same_velocity_bit_for_bit(monkeypatch):
    from stepvoice.engine.token2wav import cpu_gemm
    from stepvoice.engine.token2wav.dit import packed_weight_count

    plain, packed = _small_dit(0), _small_dit(0)
    keys = set(packed.state_dict())
    nbytes = packed.pack_weights()
    # Per block: q/k/v (one GEMM), proj, fc1, fc2 and both convs (64 -> 3*64 inputs): 6 packs.
    assert nbytes == 2 * 2 * (3 * 64 * 64 + 64 * 64 + 2 * 64 * 256 + 2 * 64 * 192)
    assert nbytes == 2 * packed_weight_count(packed.cfg)  # what the memory plan counts
    assert set(packed.state_dict()) == keys  # packs are not checkpoint tensors
    used = []
    real = cpu_gemm.linear
    monkeypatch.setattr(cpu_gemm, "linear", lambda x, w, *a, **k: used.append(isinstance(w, cpu_gemm.PackedWeight))
                        or real(x, w, *a, **k))
    a = _velocity(packed)
    assert used.count(True) == 2 * 6, used  # every block GEMM ran on its packed weight
    used.clear()
    b = _velocity(plain)
    assert not any(used)
    assert torch.equal(a, b)


def test_packed_weights_stand_aside_once_the_weights_change():
    """A pack remembers its source tensors: after load_state_dict (or .float()) the model uses
    the new weights, not a stale packed copy."""
    model, other = _small_dit(0), _small_dit(1)
    model.pack_weights()
    before = _velocity(model)
    model.load_state_dict(other.state_dict())
    after = _velocity(model)
    assert not torch.equal(before, after)
    assert torch.equal(after, _velocity(other))
    assert torch.equal(_velocity(model.float().bfloat16()), after)  # new tensors after a dtype round trip


def test_only_bf16_cpu_weights_are_packed():
    from stepvoice.engine.token2wav.config import DiTConfig
    from stepvoice.engine.token2wav.dit import DiT

    assert DiT(DiTConfig(depth=1, num_heads=2, head_dim=32, hidden_size=64)).pack_weights() == 0  # fp32
    model = _small_dit(0)
    assert model.pack_weights() > 0
    model.compile_blocks()  # compiled blocks never use the packs: they are let go
    assert not any(b.attn.packs or b.mlp.packs or b.conv.packs for b in model.blocks)


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
