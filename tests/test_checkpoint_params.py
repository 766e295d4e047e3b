"""`stepvoice model params` on the real Step-Audio 2 mini config lists exactly the
parameters of reference §1 (names and shapes written out here from the facts)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stepvoice.assistant.cli import main

REAL_CONFIG = Path(__file__).parent / "fixtures" / "step_audio_2_mini_config.json"


def expected_from_reference() -> dict[str, tuple[int, ...]]:
    """Reference §1: Qwen2 backbone 3584 / 18944 / 28 layers / 28 heads of 128 / 4 kv heads,
    vocab 158720, bias on q/k/v only, untied lm_head; encoder 1280 wide, 32 blocks,
    128 mels, 1500 positions, key without bias, MLP 5120; adapter 1280 -> 2048 -> 3584."""
    h, inter, vocab, kv = 3584, 18944, 158720, 4 * 128
    e, mlp = 1280, 4 * 1280
    want: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (vocab, h),
        "model.norm.weight": (h,),
        "lm_head.weight": (vocab, h),
        "encoder.conv1.weight": (e, 128, 3),
        "encoder.conv1.bias": (e,),
        "encoder.conv2.weight": (e, e, 3),
        "encoder.conv2.bias": (e,),
        "encoder.positional_embedding.weight": (1500, e),
        "encoder.after_norm.weight": (e,),
        "encoder.after_norm.bias": (e,),
        "adapter.conv.weight": (e, e, 3),
        "adapter.conv.bias": (e,),
        "adapter.linear1.weight": (2048, e),
        "adapter.linear1.bias": (2048,),
        "adapter.linear2.weight": (h, 2048),
        "adapter.linear2.bias": (h,),
    }
    for i in range(28):
        p = f"model.layers.{i}."
        want.update({
            p + "self_attn.q_proj.weight": (h, h), p + "self_attn.q_proj.bias": (h,),
            p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
        })
    for i in range(32):
        p = f"encoder.blocks.{i}."
        want.update({
            p + "attn.query.weight": (e, e), p + "attn.query.bias": (e,),
            p + "attn.key.weight": (e, e),
            p + "attn.value.weight": (e, e), p + "attn.value.bias": (e,),
            p + "attn.out.weight": (e, e), p + "attn.out.bias": (e,),
            p + "attn_ln.weight": (e,), p + "attn_ln.bias": (e,),
            p + "mlp.0.weight": (mlp, e), p + "mlp.0.bias": (mlp,),
            p + "mlp.2.weight": (e, mlp), p + "mlp.2.bias": (e,),
            p + "mlp_ln.weight": (e,), p + "mlp_ln.bias": (e,),
        })
    return want


@pytest.fixture(scope="module")
def params_json():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["model", "params", "--config", str(REAL_CONFIG), "--json"])
    assert rc == 0
    return json.loads(out.getvalue())


def test_params_equal_reference_names_and_shapes(params_json):
    got = {row["name"]: tuple(row["shape"]) for row in params_json["params"]}
    want = expected_from_reference()
    assert sorted(set(got) - set(want)) == []
    assert sorted(set(want) - set(got)) == []
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert wrong == {}


def test_params_total_is_about_8_3_billion(params_json):
    total = params_json["total"]
    assert total == sum(math.prod(s) for s in expected_from_reference().values())
    assert 8.25e9 < total < 8.35e9


def test_params_text_table_and_checkpoint_folder(fake_checkpoint, capsys):
    assert main(["model", "params", str(fake_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "encoder.blocks.1.attn.key.weight" in out and "encoder.blocks.1.attn.key.bias" not in out
    assert out.strip().splitlines()[-1].startswith("total: ")


def test_params_bad_config_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"model_type": "qwen2", "text_config": {}, "audio_encoder_config": {}}))
    assert main(["model", "params", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "model_type" in err and "\n" not in err
    data = json.loads(REAL_CONFIG.read_text())
    del data["text_config"]["num_key_value_heads"]
    bad.write_text(json.dumps(data))
    assert main(["model", "params", "--config", str(bad)]) == 1
    assert "num_key_value_heads" in capsys.readouterr().err
