"""StepAudio2 against independent references: transformers Qwen2ForCausalLM for the
LLM, and a straightforward re-derivation of the audio encoder + adapter from the
facts in the reference (reference/step-audio-2-mini.md §1-2)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from stepvoice.engine.checkpoint import load_model


@pytest.fixture(scope="module")
def model32(fake_checkpoint):
    return load_model(fake_checkpoint, "cpu", "float32")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_text_logits_equal_transformers_qwen2(fake_checkpoint, model32):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    text = json.loads((fake_checkpoint / "config.json").read_text())["text_config"]
    # Built from the JSON directly (not through engine.config) with eager attention.
    cfg = Qwen2Config(**{k: v for k, v in text.items() if k not in ("torch_dtype",)}, attn_implementation="eager")
    ref = Qwen2ForCausalLM(cfg).eval()
    sd = {k: v for k, v in model32.state_dict().items() if k.startswith(("model.", "lm_head."))}
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m for m in missing)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 151000, (2, 37), generator=g)
    with torch.no_grad():
        want = ref(input_ids=ids).logits
        got = model32(ids)
    assert got.shape == (2, 37, 158720)
    assert _rel_err(got, want) <= 1e-5
    # A different weight would be noticed: the comparison is not vacuous.
    with torch.no_grad():
        model32.lm_head.weight[5] += 1.0
        try:
            assert _rel_err(model32(ids), want) > 1e-3
        finally:
            model32.lm_head.weight[5] -= 1.0


# ---- the audio path, re-derived by hand ------------------------------------------------


def _ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _conv(x, w, b, stride):
    """1-D conv, kernel 3, padding 1, by explicit taps. x (C_in, T) -> (C_out, T')."""
    xp = torch.nn.functional.pad(x, (1, 1))
    T_out = (x.shape[1] + 2 - 3) // stride + 1
    cols = torch.stack([xp[:, t * stride : t * stride + 3] for t in range(T_out)])  # (T', C_in, 3)
    return torch.einsum("tck,ock->ot", cols, w) + b[:, None]


def reference_audio(sd: dict, cfg: dict, mels: list[torch.Tensor]) -> list[torch.Tensor]:
    """The official batched recipe: zero-pad pieces, lengths T_i - 2, mask at
    every second frame from (T+1) % 2 with -1e10, q and k scaled by d^-0.25."""
    T = max(m.shape[1] for m in mels)
    H = cfg["n_audio_head"]
    outs = []
    for m in mels:
        x = torch.zeros(m.shape[0], T)
        x[:, : m.shape[1]] = m
        length = m.shape[1] - 2
        x = _gelu(_conv(x, sd["encoder.conv1.weight"], sd["encoder.conv1.bias"], 1))
        x = _gelu(_conv(x, sd["encoder.conv2.weight"], sd["encoder.conv2.bias"], 2)).T  # (T2, C)
        T2, C = x.shape
        x = x + sd["encoder.positional_embedding.weight"][:T2]
        keep = torch.tensor([(i < length) for i in range(T)])[(T + 1) % 2 :: 2]
        bias = torch.where(keep, 0.0, -1e10)
        d = C // H
        for i in range(cfg["n_audio_layer"]):
            p = f"encoder.blocks.{i}."
            h = _ln(x, sd[p + "attn_ln.weight"], sd[p + "attn_ln.bias"])
            q = h @ sd[p + "attn.query.weight"].T + sd[p + "attn.query.bias"]
            k = h @ sd[p + "attn.key.weight"].T
            v = h @ sd[p + "attn.value.weight"].T + sd[p + "attn.value.bias"]
            heads = []
            for j in range(H):
                sl = slice(j * d, (j + 1) * d)
                s = (q[:, sl] * d**-0.25) @ (k[:, sl] * d**-0.25).T + bias
                heads.append(torch.softmax(s, -1) @ v[:, sl])
            x = x + torch.cat(heads, -1) @ sd[p + "attn.out.weight"].T + sd[p + "attn.out.bias"]
            h = _ln(x, sd[p + "mlp_ln.weight"], sd[p + "mlp_ln.bias"])
            h = _gelu(h @ sd[p + "mlp.0.weight"].T + sd[p + "mlp.0.bias"]) @ sd[p + "mlp.2.weight"].T + sd[p + "mlp.2.bias"]
            x = x + h
        x = x[: (T2 // 2) * 2].reshape(T2 // 2, 2, C).mean(1)  # AvgPool1d(2, 2)
        x = _ln(x, sd["encoder.after_norm.weight"], sd["encoder.after_norm.bias"])
        a = _gelu(_conv(x.T, sd["adapter.conv.weight"], sd["adapter.conv.bias"], 2)).T
        a = torch.relu(a @ sd["adapter.linear1.weight"].T + sd["adapter.linear1.bias"])
        a = a @ sd["adapter.linear2.weight"].T + sd["adapter.linear2.bias"]
        # Placeholder count from the reference formula.
        e = (length + 1) // 2 // 2
        n = (e - 1) // 2 + 1
        outs.append(a[:n])
    return outs


def test_audio_encoder_and_adapter_equal_reference(fake_checkpoint, model32):
    cfg = json.loads((fake_checkpoint / "config.json").read_text())["audio_encoder_config"]
    sd = {k: v.float() for k, v in model32.state_dict().items()}
    g = torch.Generator().manual_seed(2)
    # Different lengths and parities in one batch, as several 25 s pieces of a turn would be.
    mels = [torch.randn(128, T, generator=g) for T in (204, 151, 96)]
    with torch.no_grad():
        got = model32.encode_audio(mels)
    want = reference_audio(sd, cfg, mels)
    assert [g_.shape[0] for g_ in got] == [w.shape[0] for w in want] == [25, 19, 12]
    for g_, w in zip(got, want):
        assert _rel_err(g_, w) <= 1e-5


def test_encoder_mask_makes_batching_invisible(model32):
    """A short piece gives the same encoder frames alone as beside a longer one
    (pieces of equal length parity, so the official mask offsets agree)."""
    g = torch.Generator().manual_seed(3)
    short, long = torch.randn(128, 120, generator=g), torch.randn(128, 300, generator=g)
    enc = model32.encoder
    with torch.no_grad():
        alone, n_alone = enc(short[None], torch.tensor([118]))
        batch = torch.zeros(2, 128, 300)
        batch[0, :, :120], batch[1] = short, long
        both, n_both = enc(batch, torch.tensor([118, 298]))
        n = int(n_alone[0])
        assert n == int(n_both[0]) == 29
        assert torch.allclose(both[0, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
        # Without the mask the padding would leak into the short piece.
        unmasked = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(batch)))).transpose(1, 2)
        unmasked = unmasked + enc.positional_embedding.weight[: unmasked.shape[1]]
        for block in enc.blocks:
            unmasked = block(unmasked, None)
        pooled = enc.after_norm(enc.avg_pooler(unmasked.transpose(1, 2)).transpose(1, 2))
        assert not torch.allclose(pooled[0, :n], alone[0, :n], atol=1e-3)


def test_audio_is_written_over_the_patch_slots(model32):
    g = torch.Generator().manual_seed(4)
    mels = [torch.randn(128, 102, generator=g), torch.randn(128, 60, generator=g)]  # 102 and 60 mel frames
    with torch.no_grad():
        pieces = model32.encode_audio(mels)
    n0, n1 = (p.shape[0] for p in pieces)
    assert (n0, n1) == (13, 7)  # reference §2 formula: 1 s (102 frames) -> 13 slots
    ids = [151665, 10, 151688] + [151690] * n0 + [151689, 11, 151688] + [151690] * n1 + [151689, 12]
    starts = [2, 2 + n0 + 3]
    with torch.no_grad():
        emb = model32.embed(torch.tensor([ids]), mels, starts)[0]
        plain = model32.model.embed_tokens(torch.tensor(ids))
    assert torch.equal(emb[3 : 3 + n0], pieces[0])
    assert torch.equal(emb[starts[1] + 1 : starts[1] + 1 + n1], pieces[1])
    others = [i for i in range(len(ids)) if ids[i] != 151690]
    assert torch.equal(emb[others], plain[others])
    with pytest.raises(ValueError, match="audio_starts"):
        model32.embed(torch.tensor([ids]), mels, starts[:1])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_load_runs_and_tracks_fp32(fake_checkpoint, model32, dtype):
    m16 = load_model(fake_checkpoint, "cpu", dtype)
    assert {p.dtype for p in m16.parameters()} == {getattr(torch, dtype)}
    assert not any(p.is_meta for p in m16.parameters())
    g = torch.Generator().manual_seed(5)
    mel = torch.randn(128, 102, generator=g)
    ids = torch.tensor([[151665, 10, 151688] + [151690] * 13 + [151689, 11]])
    with torch.no_grad():
        a = m16(ids, [mel], [2]).float()
        b = model32(ids, [mel], [2])
    assert torch.isfinite(a).all()
    assert _rel_err(a, b) < 0.05
