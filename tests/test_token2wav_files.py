"""flow.yaml parsing, the fake writer's files, folder checks and clear errors for bad files and codes."""
from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from stepvoice.engine.errors import CheckpointError
from stepvoice.engine.token2wav import SpeechCodeError, Token2Wav, VoicePrompt, default_voice_path
from stepvoice.engine.token2wav.check import check_token2wav
from stepvoice.engine.token2wav.config import FlowConfig, dump_flow_yaml, parse_flow_yaml
from stepvoice.engine.token2wav.fake import flow_config

# The official file's layout and values (reference §5 and the public ports that read it).
OFFICIAL_FLOW_YAML = """\
flow: !new:cosyvoice2.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: 192
    output_type: 'mel'
    vocab_size: 6561
    encoder: !new:cosyvoice2.transformer.upsample_encoder_v2.UpsampleConformerEncoderV2
        input_size: 512
        output_size: 512
        input_layer: 'linear'
        pre_lookahead_len: 3
        num_blocks: 6
        num_up_blocks: 4
        up_stride: 2
        up_scale_factor: 2
        attention_heads: 8
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        key_bias: true
        linear_units: 2048
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: true
    decoder: !new:cosyvoice2.flow.flow_matching.CausalConditionalCFM
        inference_cfg_rate: 0.7
        estimator: !new:cosyvoice2.flow.decoder_dit.DiT
            in_channels: 320
            out_channels: 80
            mlp_ratio: 4.0
            depth: 16
            num_heads: 8
            head_dim: 64
            hidden_size: 512
"""


def _copy(fake_token2wav, tmp_path):
    return shutil.copytree(fake_token2wav, tmp_path / "token2wav")


def test_official_flow_yaml_parses_to_the_real_hyperparameters():
    cfg = parse_flow_yaml(OFFICIAL_FLOW_YAML)
    assert cfg == FlowConfig()
    assert (cfg.encoder.num_blocks, cfg.encoder.num_up_blocks, cfg.decoder.estimator.depth) == (6, 4, 16)
    assert cfg.decoder.inference_cfg_rate == 0.7 and cfg.up_rate == 2


@pytest.mark.parametrize("size", ["tiny", "small", "real"])
def test_dumped_yaml_round_trips_and_uses_the_official_tags(size):
    text = dump_flow_yaml(flow_config(size))
    assert parse_flow_yaml(text) == flow_config(size)
    assert text.startswith("flow: !new:cosyvoice2.flow.flow.CausalMaskedDiffWithXvec\n")
    assert "!new:cosyvoice2.flow.decoder_dit.DiT" in text


@pytest.mark.parametrize("text, message", [
    ("flow: [1, 2", "not valid YAML"),
    ("other: 1\n", "no `flow:"),
    ("flow: !new:os.system\n    cmd: ls\n", "not valid YAML"),
    (OFFICIAL_FLOW_YAML.replace("hidden_size: 512", "hidden_size: 512\n            bogus: 1"), "unknown keys"),
    (OFFICIAL_FLOW_YAML.replace("in_channels: 320", "in_channels: 321"), "in_channels"),
])
def test_bad_flow_yaml_is_a_clear_checkpoint_error(text, message):
    with pytest.raises(CheckpointError, match=message):
        parse_flow_yaml(text)


def test_fake_onnx_files_have_the_real_signatures(fake_token2wav):
    campplus = ort.InferenceSession(str(fake_token2wav / "campplus.onnx"))
    out = campplus.run(None, {campplus.get_inputs()[0].name: np.random.randn(1, 123, 80).astype(np.float32)})[0]
    assert out.shape == (1, 192) and out.dtype == np.float32
    tok = ort.InferenceSession(str(fake_token2wav / "speech_tokenizer_v2_25hz.onnx"))
    assert [i.name for i in tok.get_inputs()] == ["feats", "feats_length"]
    feats = np.random.randn(1, 128, 301).astype(np.float32)
    codes = tok.run(None, {"feats": feats, "feats_length": np.array([301], np.int32)})[0]
    assert codes.shape == (1, 76) and np.issubdtype(codes.dtype, np.integer)  # 25 per second
    assert 0 <= codes.min() and codes.max() <= 6560


def test_fake_weights_use_the_official_key_names(fake_token2wav):
    hift = torch.load(fake_token2wav / "hift.pt", weights_only=True)
    assert all(k.startswith("generator.") for k in hift)
    assert "generator.conv_pre.parametrizations.weight.original0" in hift
    flow = torch.load(fake_token2wav / "flow.pt", weights_only=True)
    assert {"input_embedding.weight", "spk_embed_affine_layer.weight", "encoder.embed.out.0.weight",
            "encoder.encoders.0.self_attn.pos_bias_u", "decoder.estimator.blocks.0.conv.block.6.weight",
            "decoder.estimator.final_layer.linear.weight"} <= set(flow)
    assert flow["input_embedding.weight"].shape[0] == 6561


def test_check_passes_on_a_fresh_fake(fake_token2wav):
    assert check_token2wav(fake_token2wav) == []


def test_check_reports_missing_and_corrupt_files(fake_token2wav, tmp_path):
    folder = _copy(fake_token2wav, tmp_path)
    (folder / "hift.pt").unlink()
    (folder / "campplus.onnx").write_bytes(b"\x00garbage" * 10)
    flow = torch.load(folder / "flow.pt", weights_only=True)
    flow["encoder_proj.weight"] = torch.zeros(3, 3)
    del flow["decoder.estimator.in_proj.bias"]
    torch.save(flow, folder / "flow.pt")
    problems = check_token2wav(folder)
    text = "\n".join(problems)
    assert "missing hift.pt" in text
    assert "campplus.onnx" in text and "corrupt" in text
    assert "lacks 1 tensors" in text and "decoder.estimator.in_proj.bias" in text
    assert "wrong shape" in text and "encoder_proj.weight" in text


def test_corrupt_files_fail_loading_with_one_clear_line(fake_token2wav, tmp_path):
    folder = _copy(fake_token2wav, tmp_path)
    data = (folder / "flow.pt").read_bytes()
    (folder / "flow.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot read flow.pt"):
        Token2Wav.from_dir(folder)
    shutil.copy(fake_token2wav / "flow.pt", folder / "flow.pt")
    (folder / "speech_tokenizer_v2_25hz.onnx").write_bytes(b"not onnx at all")
    t2w = Token2Wav.from_dir(folder)  # the voice models load on first use
    with pytest.raises(CheckpointError, match="speech_tokenizer_v2_25hz.onnx") as info:
        t2w.prepare_voice(default_voice_path())
    assert "\n" not in str(info.value)
    assert t2w.synthesize([1, 2, 3], VoicePrompt(np.arange(25), np.ones(192), np.zeros((50, 80)))).size == 2880
    with pytest.raises(CheckpointError, match="no token2wav folder"):
        Token2Wav.from_dir(tmp_path / "nowhere")


def test_loading_accepts_a_checkpoint_folder_and_old_weight_norm_names(fake_token2wav, tmp_path):
    folder = _copy(fake_token2wav, tmp_path)
    state = torch.load(folder / "hift.pt", weights_only=True)
    renamed = {k.replace(".parametrizations.weight.original0", ".weight_g")
                .replace(".parametrizations.weight.original1", ".weight_v"): v for k, v in state.items()}
    torch.save(renamed, folder / "hift.pt")
    assert check_token2wav(folder) == []
    a = Token2Wav.from_dir(tmp_path)  # the checkpoint folder holding token2wav/
    b = Token2Wav.from_dir(fake_token2wav)
    mel = np.random.default_rng(0).standard_normal((80, 12)).astype(np.float32) - 4
    assert np.array_equal(a.vocode(mel), b.vocode(mel))


@pytest.mark.parametrize("codes, message", [
    ([], "empty"),
    ([1, 2, 6561], "6561 at position 2"),
    ([-1], "-1 at position 0"),
    ("1 2 3", "not text"),
    ([1.5, 2.0], "integers"),
    ([[1, 2], [3, 4]], "flat"),
])
def test_bad_codes_are_clear_errors(fake_token2wav, codes, message):
    t2w = Token2Wav.from_dir(fake_token2wav)
    voice = t2w.prepare_voice(default_voice_path())
    with pytest.raises(SpeechCodeError, match=message):
        t2w.synthesize(codes, voice)
    assert t2w.synthesize([0, 6560, 4218], voice).shape == (3 * 960,)  # the bounds are valid
