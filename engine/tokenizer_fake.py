"""Fake Step-Audio 2 tokenizer files for tests and `stepvoice model fake`.

A small byte-level BPE (trained here on a few built-in sentences, so any UTF-8
text still round-trips byte by byte) in Qwen2's file layout, with every
special token of the real model at its real id.

Ids and where they come from:
- 151643..151664: Qwen2.5's added tokens (`<|endoftext|>` ... `<|file_sep|>`,
  including `<tool_call>` 151657 / `</tool_call>` 151658 as non-special tokens).
- `<|EOT|>` 151665 (UNCONFIRMED): a Step-Audio-2-derived config published on
  GitHub sets `eos_token_id = 151665` next to `pad_token_id = 151643`, and the
  official code stops on `<|EOT|>`; the reference notes agree.
- `<|BOT|>` 151666 (UNCONFIRMED: next free id after `<|EOT|>`; the real ids are
  read from the files at load time).
- `<think>` / `</think>`: by DEFAULT ordinary text, spread over several BPE tokens,
  the layout the real checkpoint most likely has: the official Think example
  stops on the decoded STRING `</think>`, drops the last generated token and
  appends `">\n\n<tts_start>"` (examples-think.py lines 13-16), which only makes
  sense when `</think>` is not one token; a third-party parser of the same
  checkpoint family reports `</think` and `>` as separate ordinary tokens.
  `write_fake_tokenizer(dir, think_tokens=True)` writes the other layout, with
  `<think>` 151667 and `</think>` 151668 as single added tokens (Qwen3's ids).
- `<audio_start>` 151688, `<audio_end>` 151689, `<audio_patch>` 151690,
  `<tts_start>` 151693, `<tts_end>` 151694 (published).
- `<tts_pad>` 151695 (UNCONFIRMED, same derived config: `tts_pad_token_id = 151695`).
- `<audio_0>` .. `<audio_6561>` = 151696 .. 158257 (published).
Unnamed slots in between get `<|reserved_N|>` placeholders so the id space has no holes.
"""
from __future__ import annotations

import json
from pathlib import Path

from stepvoice.engine.tokenizer import N_SPEECH_CODES, audio_token, qwen2_tokenizer_json

QWEN25_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
FIRST_ADDED_ID = 151643
STEP_TOKENS = {
    151665: ("<|EOT|>", True),
    151666: ("<|BOT|>", True),
    151688: ("<audio_start>", True),
    151689: ("<audio_end>", True),
    151690: ("<audio_patch>", True),
    151693: ("<tts_start>", True),
    151694: ("<tts_end>", True),
    151695: ("<tts_pad>", True),
}
THINK_TOKENS = {151667: ("<think>", False), 151668: ("</think>", False)}  # only with think_tokens=True
AUDIO_FIRST_ID = 151696
FAKE_BPE_VOCAB = 1200  # small: the fake only needs to be byte-complete and deterministic

# A few sentences so common words and role names merge into single tokens.
_CORPUS = [
    "system human assistant input tool_json_schemas function",
    "You are a helpful assistant. Please answer briefly and conversationally.",
    "Give me a brief introduction to the Great Wall. What is the weather in Paris today?",
    "The quick brown fox jumps over the lazy dog. Hello, world! How are you?",
    "search get_weather get_date_time timbre_rag query location arguments name",
    '{"query": "weather", "location": "Beijing", "type": "function", "parameters": {}}',
    "请用语音与我交流。请记录下你所听到的语音内容。你好，世界！今天天气怎么样？",
    "长城是中国古代的军事防御工程。北京 上海 深圳",
    "0123456789 3.14 2025-01-01 12:30",
    "\n<think>\nThe user asks about the weather.\n</think>\n\n",
]


def fake_added_tokens(think_tokens: bool = False) -> list[dict]:
    """[{"id", "content", "special"}] for every added token of the fake, ids ascending.
    `think_tokens`: `<think>` / `</think>` are single added tokens (else ordinary text)."""
    out = [{"id": FIRST_ADDED_ID + i, "content": c, "special": s} for i, (c, s) in enumerate(QWEN25_ADDED)]
    next_id = FIRST_ADDED_ID + len(QWEN25_ADDED)
    named = {**STEP_TOKENS, **(THINK_TOKENS if think_tokens else {})}
    for tid in range(next_id, AUDIO_FIRST_ID):
        content, special = named.get(tid, (f"<|reserved_{tid}|>", True))
        out.append({"id": tid, "content": content, "special": special})
    for k in range(N_SPEECH_CODES + 1):
        out.append({"id": AUDIO_FIRST_ID + k, "content": audio_token(k), "special": True})
    return out


def _train_bpe() -> tuple[dict[str, int], list[str]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=FAKE_BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False, min_frequency=1,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def write_fake_tokenizer(directory: Path, think_tokens: bool = False) -> None:
    """Tokenizer files in `directory`; `think_tokens`: the layout where `<think>` and
    `</think>` are single tokens (default: ordinary text, as on the real checkpoint)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = _train_bpe()
    added = fake_added_tokens(think_tokens)
    assert max(vocab.values()) < FIRST_ADDED_ID
    # vocab.json also lists the added tokens (Qwen's does not): with the gap between
    # the small BPE vocab and 151643, transformers would otherwise renumber them.
    full_vocab = {**vocab, **{a["content"]: a["id"] for a in added}}
    (directory / "vocab.json").write_text(json.dumps(full_vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    doc = qwen2_tokenizer_json(vocab, merges, added)
    (directory / "tokenizer.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    (directory / "added_tokens.json").write_text(
        json.dumps({a["content"]: a["id"] for a in added}, ensure_ascii=False, indent=0), encoding="utf-8"
    )
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(a["id"]): {
                "content": a["content"], "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": a["special"],
            }
            for a in added
        },
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 16384,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
