"""StepAudio2: audio encoder + adapter + a transformers Qwen2 model + untied lm_head.

`state_dict()` keys equal the checkpoint keys (`encoder.*`, `adapter.*`,
`model.*`, `lm_head.weight`). Audio enters as log-mel pieces; the adapter
outputs of piece i overwrite the `<audio_patch>` embeddings that follow the
i-th `<audio_start>` (its index in the ids is given by the prompt).
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from torch import nn

from stepvoice.engine.config import StepAudio2Config
from stepvoice.engine.encoder import Adapter, AudioEncoder
from stepvoice.engine.mel import placeholder_count


def _cache_kwarg() -> str:
    """transformers 5 renamed Qwen2Model's `past_key_values` argument to `cache`."""
    from transformers import Qwen2Model

    return "cache" if "cache" in inspect.signature(Qwen2Model.forward).parameters else "past_key_values"


class StepAudio2(nn.Module):
    def __init__(self, config: StepAudio2Config):
        super().__init__()
        from transformers import Qwen2Model

        self.config = config
        self.qwen2_config = config.text_config.to_qwen2()
        self.encoder = AudioEncoder(config.audio_encoder_config)
        self.adapter = Adapter(config.audio_encoder_config)
        self.model = Qwen2Model(self.qwen2_config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self._cache_kwarg = _cache_kwarg()

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def new_cache(self, capacity: int | None = None) -> Any:
        """An empty KV cache for one generation (the caller owns it): reserved for
        `capacity` positions, or transformers' growing DynamicCache without one."""
        if capacity:
            from stepvoice.engine.kv_cache import new_kv_cache

            return new_kv_cache(self.qwen2_config, capacity)
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.qwen2_config)
        except TypeError:  # transformers 4.x
            return DynamicCache()

    # ---- audio --------------------------------------------------------------------

    def encode_audio(self, mels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Log-mel pieces [n_mels, T_i] -> one [n_i, hidden] tensor per piece.

        Pieces are zero-padded into one batch, as the official model does; the
        key-padding mask keeps padding out of the attention.
        """
        if not mels:
            return []
        cfg = self.config.audio_encoder_config
        for m in mels:
            if m.dim() != 2 or m.shape[0] != cfg.n_mels or m.shape[1] < 3:
                raise ValueError(f"each mel piece must be [{cfg.n_mels}, T>=3], got {list(m.shape)}")
        T = max(m.shape[1] for m in mels)
        batch = torch.zeros(len(mels), cfg.n_mels, T, device=self.device, dtype=self.dtype)
        for i, m in enumerate(mels):
            batch[i, :, : m.shape[1]] = m.to(device=self.device, dtype=self.dtype)
        lengths = torch.tensor([m.shape[1] - 2 for m in mels], device=self.device)
        hidden, _ = self.encoder(batch, lengths)
        out = self.adapter(hidden)
        # Slot counts from the host-side lengths: no device sync, and it runs on meta.
        n = [placeholder_count(m.shape[1], cfg.kernel_size, cfg.adapter_stride) for m in mels]
        return [out[i, : n[i]] for i in range(len(mels))]

    def embed(
        self,
        input_ids: torch.Tensor,
        mels: Sequence[torch.Tensor] | None = None,
        audio_starts: Sequence[int | tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Token embeddings with audio written over the `<audio_patch>` slots.

        `audio_starts[i]` is the index of piece i's `<audio_start>` in row 0, or
        a (row, index) pair; its n_i patches follow it directly.
        """
        embeds = self.model.embed_tokens(input_ids)  # (B, S, hidden)
        if not mels:
            return embeds
        starts = list(audio_starts or [])
        if len(starts) != len(mels):
            raise ValueError(f"{len(mels)} audio pieces but {len(starts)} audio_starts")
        pieces = self.encode_audio(mels)
        for piece, start in zip(pieces, starts):
            row, pos = start if isinstance(start, tuple) else (0, start)
            end = pos + 1 + piece.shape[0]
            if end > embeds.shape[1]:
                raise ValueError(f"audio piece at {pos} needs {piece.shape[0]} slots past the end of the ids")
            embeds[row, pos + 1 : end] = piece.to(embeds.dtype)
        return embeds

    # ---- forward ------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        mels: Sequence[torch.Tensor] | None = None,
        audio_starts: Sequence[int | tuple[int, int]] | None = None,
        past_key_values: Any = None,
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> torch.Tensor:
        """Logits (B, S, vocab), or only the last `logits_to_keep` positions.

        With `past_key_values` (a transformers Cache) the new keys/values are
        appended to it; `position_ids` default to continuing after the cache.
        """
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        embeds = self.embed(input_ids, mels, audio_starts)
        if position_ids is None:
            past = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)[None]
        out = self.model(
            inputs_embeds=embeds,
            position_ids=position_ids,
            use_cache=past_key_values is not None,
            **{self._cache_kwarg: past_key_values},
        )
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self.lm_head(hidden)

    def reset_rotary(self, device: torch.device | str) -> None:
        """Recompute the rotary tables (non-persistent buffers, empty after a meta-device build)."""
        rotary = self.model.rotary_emb
        with torch.device(device):
            self.model.rotary_emb = type(rotary)(config=self.qwen2_config)
