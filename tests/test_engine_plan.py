"""Memory planning: sizes by part from the real config, and the early refusal when a model cannot fit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from stepvoice.assistant.cli import main
from stepvoice.engine.config import StepAudio2Config
from stepvoice.engine.device import parse_bytes, parse_device
from stepvoice.engine.errors import CheckpointError, ConfigError
from stepvoice.engine.plan import make_plan

REAL_CONFIG = Path(__file__).parent / "fixtures" / "step_audio_2_mini_config.json"


def plan_json(capsys, *argv) -> dict:
    assert main(["model", "plan", "--config", str(REAL_CONFIG), "--device", "cpu", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_real_config_bf16_weights_match_the_checkpoint_and_int4_fits_8gb(capsys):
    bf16 = plan_json(capsys, "--dtype", "bfloat16")
    assert abs(bf16["weights_bytes"] - 16.6e9) / 16.6e9 < 0.03  # the official shards hold ~16.6 GB
    assert bf16["quantize"] == "none" and bf16["total_bytes"] > bf16["weights_bytes"]
    int8 = plan_json(capsys, "--dtype", "bfloat16", "--quantize", "int8")
    int4 = plan_json(capsys, "--dtype", "bfloat16", "--quantize", "int4")
    assert int4["total_bytes"] < 8e9
    assert int4["weights_bytes"] < int8["weights_bytes"] < bf16["weights_bytes"]
    # Only the LLM's linear layers shrink: the encoder + adapter and the KV cache stay the same.
    assert int4["parts"]["audio"] == bf16["parts"]["audio"] and int4["parts"]["kv_cache"] == bf16["parts"]["kv_cache"]
    # 28 layers x 4 kv heads x 128 dims x keys+values x 2 bytes = 57.3 MB per 1000 tokens
    assert bf16["kv_cache_per_1k"] == 2 * 28 * 4 * 128 * 1000 * 2
    assert isinstance(bf16["fits"], bool) and bf16["free_bytes"] > 0


def test_int4_plan_for_a_cuda_gpu_stays_under_8gb_with_the_framework_reserve(monkeypatch):
    from stepvoice.engine import plan as plan_module

    monkeypatch.setattr(plan_module, "free_memory", lambda device: None)  # no GPU on the test machine
    config = StepAudio2Config.from_file(REAL_CONFIG)
    gpu = make_plan(config, torch.device("cuda"), torch.bfloat16, "int4")
    cpu = make_plan(config, torch.device("cpu"), torch.bfloat16, "int4", token2wav_dtype="fp32")
    assert gpu.parts["working"] - cpu.parts["working"] == plan_module.FRAMEWORK_RESERVE
    # token2wav's flow in half precision on a GPU (bf16 or fp16), the HiFT vocoder in fp32
    assert gpu.parts["token2wav"] == plan_module.FLOW_DEFAULT_BYTES // 2 + plan_module.HIFT_DEFAULT_BYTES
    assert cpu.parts["token2wav"] == plan_module.FLOW_DEFAULT_BYTES + plan_module.HIFT_DEFAULT_BYTES
    # bf16 on the CPU: the flow in bf16 plus the estimator's weights packed for oneDNN (151 MB)
    cpu_bf16 = make_plan(config, torch.device("cpu"), torch.bfloat16, "int4", token2wav_dtype="bf16")
    assert (cpu_bf16.parts["token2wav"] - plan_module.FLOW_DEFAULT_BYTES // 2 - plan_module.HIFT_DEFAULT_BYTES
            == 16 * 4_718_592 * 2)
    assert gpu.total_bytes < 8e9  # the int4 goal: under 8 GB on the GPU, attention int8 included


def test_plan_refusal_names_the_lightest_scheme_that_fits(monkeypatch):
    config = StepAudio2Config.from_file(REAL_CONFIG)
    monkeypatch.setenv("STEPVOICE_MEMORY_LIMIT", "12GB")
    plan = make_plan(config, torch.device("cpu"), torch.bfloat16)
    assert plan.fits is False and plan.free_bytes == 12 * 10**9
    line = plan.refusal()
    assert line.startswith("the model needs 17.") and "12.0 GB free" in line and line.endswith(")")
    assert "try --quantize int8" in line
    monkeypatch.setenv("STEPVOICE_MEMORY_LIMIT", "9GB")
    assert "try --quantize int4" in make_plan(config, torch.device("cpu"), torch.bfloat16).refusal()
    monkeypatch.setenv("STEPVOICE_MEMORY_LIMIT", "3GB")
    assert "no weight scheme fits" in make_plan(config, torch.device("cpu"), torch.bfloat16).refusal()
    monkeypatch.setattr("stepvoice.engine.plan.free_memory", lambda device: 64 * 10**9)  # a big machine
    assert make_plan(config, torch.device("cpu"), torch.bfloat16).refusal() is None


def test_load_refuses_before_reading_any_shard(fake_checkpoint, tmp_path, monkeypatch, capsys, home):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(fake_checkpoint, ckpt)
    for shard in ckpt.glob("*.safetensors"):
        shard.write_bytes(b"not a safetensors file")  # reading any shard would fail with another message
    monkeypatch.setenv("STEPVOICE_MEMORY_LIMIT", "20MB")
    rc = main(["ask", "--model", str(ckpt), "--text", "hi", "--no-tools", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("error: the model needs ") and "this machine has 20 MB free" in err[0]
    assert "shard" not in err[0]
    # With room, the same corrupt folder fails on the shards: the refusal above really came first.
    monkeypatch.setenv("STEPVOICE_MEMORY_LIMIT", "64GB")
    from stepvoice.engine.checkpoint import load_model

    with pytest.raises(CheckpointError, match="shard"):
        load_model(ckpt, "cpu")


def test_plan_text_table_and_bad_inputs(capsys, monkeypatch):
    assert main(["model", "plan", "--config", str(REAL_CONFIG), "--device", "cpu", "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    for part in ("LLM weights", "encoder + adapter", "token2wav", "KV cache", "working memory", "total"):
        assert part in out
    assert parse_bytes("800MB") == 800 * 10**6 and parse_bytes("1.5 GiB") == int(1.5 * 2**30)
    with pytest.raises(ConfigError):
        parse_bytes("lots")
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "mps" if
                                         torch.backends.mps.is_available() else "cpu")
    assert main(["model", "plan", "--device", "cpu"]) == 1  # no source: one line
    assert capsys.readouterr().err.startswith("error: give a checkpoint folder")
