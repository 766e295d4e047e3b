"""A stand-in for StepAudio2 inside `Generation`: model call n returns logits whose argmax is
`script[n]` (one call per generated token), certain at any temperature. Lets the local backend's
real decoding path (stream decoder, Think, stops) run on a scripted token stream."""
from __future__ import annotations

import torch


class ScriptedLogits:
    def __init__(self, model, script):
        self.config, self.device, self.script, self.calls = model.config, model.device, list(script), []

    def new_cache(self, capacity=None):
        return None

    def __call__(self, x, mels=None, starts=None, past_key_values=None, position_ids=None, logits_to_keep=0):
        self.calls.append(x[0].tolist())
        logits = torch.zeros(1, 1, self.config.text_config.vocab_size)
        logits[0, 0, self.script[len(self.calls) - 1]] = 1e4
        return logits


class ScriptedOverModel:
    """The real model runs every call (its KV cache fills as in use) and its last-position logits are
    kept in `real`; what it returns picks `script[n]` like ScriptedLogits. Lets a test check that a
    reused cache gives the model the same logits as a full prefill."""

    def __init__(self, model, script):
        self.model, self.config, self.device, self.script = model, model.config, model.device, list(script)
        self.quantization = getattr(model, "quantization", None)
        self.calls: list[list[int]] = []
        self.real: list[torch.Tensor] = []

    def new_cache(self, capacity=None):
        return self.model.new_cache(capacity)

    def __call__(self, x, *args, **kwargs):
        self.calls.append(x[0].tolist())
        logits = self.model(x, *args, **kwargs)
        self.real.append(logits[0, -1].float().clone())
        scripted = torch.zeros_like(logits)
        scripted[0, -1, self.script[len(self.calls) - 1]] = 1e4
        return scripted
