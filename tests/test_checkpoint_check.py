"""`model check` passes a fake checkpoint and names what is wrong in broken ones;
loading a broken one raises a CheckpointError naming the problem."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stepvoice.assistant.cli import main
from stepvoice.engine.checkpoint import check, load_model, resolve
from stepvoice.engine.errors import CheckpointError


@pytest.fixture
def broken(fake_checkpoint, tmp_path) -> Path:
    """A private copy of the fake checkpoint that a test may damage."""
    return Path(shutil.copytree(fake_checkpoint, tmp_path / "ckpt"))


def _index(d: Path) -> dict[str, str]:
    return json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]


def test_fake_layout_is_official(fake_checkpoint):
    files = {p.name for p in fake_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors.index.json", "tokenizer_config.json"} <= files
    shards = sorted(set(_index(fake_checkpoint).values()))
    assert len(shards) >= 3 and all(s in files for s in shards)
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    config = json.loads((fake_checkpoint / "config.json").read_text())
    assert config["model_type"] == "step_audio_2"
    assert config["architectures"] == ["StepAudio2ForCausalLM"]
    assert config["text_config"]["vocab_size"] == 158720
    tensors = load_file(str(fake_checkpoint / shards[0]))
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}


def test_fake_checkpoint_passes_check(fake_checkpoint, capsys):
    report = check(fake_checkpoint)
    assert report.ok, str(report)
    assert main(["model", "check", str(fake_checkpoint)]) == 0
    assert "OK" in capsys.readouterr().out


def _fails_naming(d: Path, capsys, *needles: str) -> None:
    report = check(d)
    assert not report.ok
    text = "\n".join(report.problems)
    for n in needles:
        assert n in text, text
    assert main(["model", "check", str(d)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    for n in needles:
        assert n in captured.out


def test_missing_shard(broken, capsys):
    shard = sorted(set(_index(broken).values()))[1]
    (broken / shard).unlink()
    _fails_naming(broken, capsys, shard)
    with pytest.raises(CheckpointError, match=shard):
        load_model(broken, "cpu", "float32")


def test_wrong_shape(broken, capsys):
    name = "model.layers.1.self_attn.k_proj.weight"
    shard = broken / _index(broken)[name]
    tensors = load_file(str(shard))
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1], dtype=torch.bfloat16)
    save_file(tensors, str(shard), metadata={"format": "pt"})
    _fails_naming(broken, capsys, name, "shape")
    with pytest.raises(CheckpointError, match="k_proj"):
        load_model(broken, "cpu", "float32")


def test_missing_tensor(broken, capsys):
    name = "encoder.blocks.0.attn.key.weight"
    shard = broken / _index(broken)[name]
    tensors = load_file(str(shard))
    del tensors[name]
    save_file(tensors, str(shard), metadata={"format": "pt"})
    _fails_naming(broken, capsys, name)
    with pytest.raises(CheckpointError, match="attn.key.weight"):
        load_model(broken, "cpu", "float32")


def _drop_token(obj, token: str):
    """Remove a token from any tokenizer JSON structure (keys, {"content": ...} entries)."""
    if isinstance(obj, dict):
        return {k: _drop_token(v, token) for k, v in obj.items()
                if k != token and not (isinstance(v, dict) and v.get("content") == token)}
    if isinstance(obj, list):
        return [_drop_token(v, token) for v in obj if not (isinstance(v, dict) and v.get("content") == token)]
    return obj


@pytest.mark.parametrize("token", ["<tts_pad>", "<|EOT|>"])
def test_missing_special_token(broken, capsys, token):
    for f in broken.glob("*.json"):
        if f.name.startswith(("tokenizer", "added_tokens", "vocab", "special_tokens")):
            f.write_text(json.dumps(_drop_token(json.loads(f.read_text()), token)))
    _fails_naming(broken, capsys, token)


def test_wrong_model_type(broken, capsys):
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "qwen2"
    (broken / "config.json").write_text(json.dumps(config))
    _fails_naming(broken, capsys, "model_type", "qwen2")
    with pytest.raises(CheckpointError, match="model_type"):
        load_model(broken, "cpu")


def test_missing_config_and_index(broken, capsys):
    (broken / "model.safetensors.index.json").unlink()
    _fails_naming(broken, capsys, "model.safetensors.index.json")
    (broken / "config.json").unlink()
    _fails_naming(broken, capsys, "config.json")
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(broken, "cpu")


def test_resolve_specs(fake_checkpoint, tmp_path, monkeypatch):
    assert resolve(str(fake_checkpoint)) == fake_checkpoint
    script = tmp_path / "s.yaml"
    script.write_text("replies: []\n")
    assert resolve(f"scripted:{script}") == script
    with pytest.raises(CheckpointError, match="not found"):
        resolve(str(tmp_path / "nope" / "deeper"))
    with pytest.raises(CheckpointError, match="scripted"):
        resolve(f"scripted:{tmp_path / 'missing.yaml'}")
    # A hub id with no network and no cache: a helpful one-line error, quickly.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="model download"):
        resolve("stepfun-ai/Step-Audio-2-mini-not-cached")


def test_token2wav_folder_is_checked(broken, capsys):
    (broken / "token2wav" / "flow.pt").unlink()
    _fails_naming(broken, capsys, "token2wav", "flow.pt")


def test_cli_fake_writes_a_checkpoint_that_passes(tmp_path, capsys):
    out = tmp_path / "fresh"
    assert main(["model", "fake", str(out), "--size", "tiny", "--seed", "3"]) == 0
    assert "fake tiny checkpoint" in capsys.readouterr().out
    assert check(out).ok



def test_cli_download_offline_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["model", "download", "stepfun-ai/Step-Audio-2-mini", "--dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot download stepfun-ai/Step-Audio-2-mini")


def test_device_and_dtype_errors():
    import torch

    from stepvoice.engine.checkpoint import parse_device, parse_dtype
    from stepvoice.engine.errors import ConfigError

    assert parse_dtype(None, torch.device("cpu"), 1000) == torch.float32
    assert parse_dtype(None, torch.device("cpu"), 8_300_000_000) == torch.bfloat16
    assert parse_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype"):
        parse_dtype("float8", torch.device("cpu"))
    with pytest.raises(ConfigError, match="device"):
        parse_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            parse_device("cuda")
        assert parse_device(None).type in ("cpu", "mps")


def test_truncated_shard(broken, capsys):
    shard = sorted(set(_index(broken).values()))[0]
    data = (broken / shard).read_bytes()
    (broken / shard).write_bytes(data[: len(data) // 2])
    _fails_naming(broken, capsys, shard)
    with pytest.raises(CheckpointError, match=shard):
        load_model(broken, "cpu", "float32")
