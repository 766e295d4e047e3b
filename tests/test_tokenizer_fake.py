"""The fake tokenizer files and StepTokenizer: real special ids, byte-level round trips,
loading from each file layout, and clear errors for missing tokens."""
from __future__ import annotations

import json
import shutil

import pytest

from stepvoice.engine.errors import CheckpointError
from stepvoice.engine.tokenizer import StepTokenizer, load_tokenizer, write_fake_tokenizer

PUBLISHED = {  # ids published by StepFun (reference §3)
    "<audio_start>": 151688, "<audio_end>": 151689, "<audio_patch>": 151690,
    "<tts_start>": 151693, "<tts_end>": 151694, "<audio_0>": 151696, "<audio_6561>": 158257,
    "<|endoftext|>": 151643, "<tool_call>": 151657, "</tool_call>": 151658,
}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(d)
    return d


@pytest.fixture(scope="module")
def tok(tok_dir) -> StepTokenizer:
    return load_tokenizer(tok_dir)


def test_files_in_qwen2_layout(tok_dir):
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "added_tokens.json"):
        assert (tok_dir / name).is_file(), name
    added = json.loads((tok_dir / "added_tokens.json").read_text())
    for token, tid in PUBLISHED.items():
        assert added[token] == tid, token
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert config["added_tokens_decoder"]["151688"]["content"] == "<audio_start>"


def test_special_ids_read_from_files(tok):
    assert tok.audio_start_id == 151688 and tok.audio_end_id == 151689 and tok.audio_patch_id == 151690
    assert tok.tts_start_id == 151693 and tok.tts_end_id == 151694
    assert tok.audio_first_id == 151696 and tok.audio_pad_id == 158257
    assert tok.endoftext_id == 151643
    # the unconfirmed ones: present, distinct, in the Step block between Qwen's tokens and the audio block
    others = {tok.bot_id, tok.eot_id, tok.tts_pad_id}
    assert len(others) == 3 and all(151665 <= i < 151696 for i in others)
    assert tok.decode([tok.bot_id, tok.eot_id, tok.tts_pad_id]) == "<|BOT|><|EOT|><tts_pad>"
    assert tok.vocab_size == 158258 <= 158720  # fits text_config.vocab_size


@pytest.mark.parametrize("text", [
    "Hello, world!", "Give me a brief introduction to the Great Wall.", "你好，世界！长城有多长？",
    "emoji 😀👍🏽 and accents: éàü ñ", "tabs\tand\nnewlines\r\n  spaces   ", '{"json": [1, 2.5, null]}',
    "Ελληνικά русский العربية हिन्दी",
])
def test_text_round_trips_with_text_ids_only(tok, text):
    ids = tok.encode(text)
    assert ids and all(i < 151643 for i in ids)
    assert tok.decode(ids) == text
    assert all(tok.is_text(i) for i in ids)


def test_special_strings_become_their_ids(tok):
    ids = tok.encode("<|BOT|>human\nhi<|EOT|><audio_start><audio_patch><audio_end><tts_start><audio_7><tts_end>")
    assert ids[0] == tok.bot_id
    assert ids[-7:] == [tok.eot_id, tok.audio_start_id, tok.audio_patch_id, tok.audio_end_id, tok.tts_start_id,
                        tok.audio_first_id + 7, tok.tts_end_id]
    assert tok.decode(ids[1:-7]) == "human\nhi"
    assert tok.decode(ids).startswith("<|BOT|>human\nhi<|EOT|><audio_start>")


def test_codes(tok):
    assert tok.code_of(tok.audio_first_id) == 0
    assert tok.code_of(tok.audio_first_id + 6560) == 6560
    assert tok.code_of(tok.audio_pad_id) is None
    assert tok.code_of(tok.tts_pad_id) is None and tok.code_of(100) is None
    assert tok.ids_of_codes([0, 5, 6560]) == [151696, 151701, 158256]
    with pytest.raises(ValueError):
        tok.id_of_code(6561)
    assert not tok.is_text(tok.audio_first_id) and not tok.is_text(tok.eot_id)
    assert tok.decode_text([tok.tts_start_id, *tok.encode("ok"), tok.audio_first_id, tok.tts_pad_id]) == "ok"


def test_vocab_and_merges_without_tokenizer_json(tok_dir, tok, tmp_path):
    for name in ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / name, tmp_path / name)
    other = load_tokenizer(tmp_path)
    text = "<|BOT|>system\nYou are a helpful assistant. 请用语音与我交流。<|EOT|>"
    assert other.encode(text) == tok.encode(text)
    assert other.eot_id == tok.eot_id and other.tts_pad_id == tok.tts_pad_id


def test_transformers_autotokenizer_agrees(tok_dir, tok):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tok_dir))
    text = "<|BOT|>human\nWhat's the weather in 北京?<|EOT|><|BOT|>assistant\n<tts_start>"
    assert hf(text)["input_ids"] == tok.encode(text)
    assert hf.convert_tokens_to_ids(["<|EOT|>", "<tts_pad>", "<audio_6561>"]) == [
        tok.eot_id, tok.tts_pad_id, tok.audio_pad_id]


def test_missing_special_token_is_named(tok_dir, tmp_path):
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(tok_dir / name, tmp_path / name)
    added = json.loads((tok_dir / "added_tokens.json").read_text())
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    vocab = json.loads((tok_dir / "vocab.json").read_text())
    tid = added.pop("<tts_pad>")
    config["added_tokens_decoder"].pop(str(tid))
    vocab.pop("<tts_pad>")
    (tmp_path / "added_tokens.json").write_text(json.dumps(added))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(CheckpointError, match="<tts_pad>"):
        load_tokenizer(tmp_path)


def test_missing_files_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "absent")
    with pytest.raises(CheckpointError, match="tokenizer.json or vocab.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_fake_files_are_deterministic(tok_dir, tmp_path):
    write_fake_tokenizer(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "added_tokens.json", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (tok_dir / name).read_bytes(), name


def test_think_layouts(tok, tmp_path):
    """Default: `<think>`/`</think>` are ordinary text over several tokens (the real layout, see
    engine/tokenizer_fake.py); `think_tokens=True`: single added tokens 151667/151668."""
    assert tok.think_start_id is None and tok.think_end_id is None
    ids = tok.encode("ok</think>")
    assert len(tok.encode("</think>")) > 1 and all(tok.is_text(i) for i in ids)
    assert tok.decode(ids) == "ok</think>" and tok.id_of("<|reserved_151668|>") == 151668
    write_fake_tokenizer(tmp_path, think_tokens=True)
    single = load_tokenizer(tmp_path)
    assert (single.think_start_id, single.think_end_id) == (151667, 151668)
    assert single.encode("ok</think>")[-1] == 151668 and single.decode([151667]) == "<think>"
