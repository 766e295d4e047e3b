"""`fake(dir, size)`: a random-weight checkpoint in the exact official layout.

config.json, sharded safetensors (bf16, like the real files) + index,
Qwen2-style tokenizer files with every special token at its real id, and
token2wav/ when the token2wav module can write one. Every test loads it
through the same code path as the real checkpoint.

Sizes keep vocab_size 158720 so token ids are the real ones:
- tiny: hidden 64, 2 layers, 2 encoder layers (builds in seconds; for tests)
- small: hidden 256, 8 layers, 4 encoder layers, ~94 M parameters (for benches)
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import torch

from stepvoice.engine.config import AudioEncoderConfig, StepAudio2Config, TextConfig
from stepvoice.engine.errors import CheckpointError

log = logging.getLogger(__name__)

REAL_VOCAB_SIZE = 158720
SIZES = ("tiny", "small")


def fake_config(size: str = "tiny") -> StepAudio2Config:
    if size == "tiny":
        text = TextConfig(vocab_size=REAL_VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384,
                          torch_dtype="bfloat16")
        audio = AudioEncoderConfig(n_mels=128, n_audio_ctx=1500, n_audio_state=64, n_audio_head=4,
                                   n_audio_layer=2, llm_dim=64, adapter_hidden_size=128)
    elif size == "small":
        text = TextConfig(vocab_size=REAL_VOCAB_SIZE, hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384,
                          torch_dtype="bfloat16")
        audio = AudioEncoderConfig(n_mels=128, n_audio_ctx=1500, n_audio_state=256, n_audio_head=4,
                                   n_audio_layer=4, llm_dim=256)
    else:
        raise CheckpointError(f"unknown fake size {size!r}; use one of {', '.join(SIZES)}")
    return StepAudio2Config(text_config=text, audio_encoder_config=audio)


def random_weights(config: StepAudio2Config, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Deterministic random tensors for every checkpoint key: weights ~ N(0, 0.02),
    biases ~ N(0, 0.02), norm scales ~ 1 + N(0, 0.02)."""
    from stepvoice.engine.checkpoint import params

    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in params(config):
        t = torch.randn(shape, generator=gen) * 0.02
        leaf = name.rsplit(".", 1)[-1]
        is_norm = "norm" in name or name.endswith(("_ln.weight",))
        if is_norm and leaf == "weight":
            t += 1.0
        elif name.endswith("positional_embedding.weight"):
            t *= 10  # keep positions visible against the conv outputs
        out[name] = t.to(dtype)
    return out


def fake(directory: str | Path, size: str = "tiny", *, seed: int = 0, n_shards: int | None = None,
         token2wav: bool = True) -> Path:
    """Write a fake checkpoint into `directory` (created; existing files overwritten)."""
    from stepvoice.engine.weights import save_shards

    config = fake_config(size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / "config.json")
    save_shards(random_weights(config, seed), directory, n_shards or (3 if size == "tiny" else 4))
    (directory / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 151643, "eos_token_id": 151643, "do_sample": True}, indent=2) + "\n",
        encoding="utf-8",
    )
    _write_tokenizer(directory)
    if token2wav:
        _write_token2wav(directory / "token2wav", size)
    return directory


def _write_tokenizer(directory: Path) -> None:
    try:
        tokenizer = importlib.import_module("stepvoice.engine.tokenizer")
        write = tokenizer.write_fake_tokenizer
    except (ImportError, AttributeError):
        raise CheckpointError("engine.tokenizer.write_fake_tokenizer is not available: cannot write tokenizer files") from None
    write(directory)


def _write_token2wav(directory: Path, size: str) -> None:
    try:
        module = importlib.import_module("stepvoice.engine.token2wav.fake")
        write = module.write_fake_token2wav
    except (ImportError, AttributeError):
        log.info("engine.token2wav.fake not available: no token2wav/ written")
        return
    write(directory, size)
