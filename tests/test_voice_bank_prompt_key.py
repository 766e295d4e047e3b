"""Cached voice prompts are keyed by the token2wav folder they were prepared with."""
import os

from stepvoice.voice_bank import prompt_key_for


def make_folder(path, tokenizer_bytes=b"tok", campplus_bytes=b"cam"):
    path.mkdir(parents=True)
    (path / "speech_tokenizer_v2_25hz.onnx").write_bytes(tokenizer_bytes)
    (path / "campplus.onnx").write_bytes(campplus_bytes)
    return path


def test_key_is_stable_for_one_folder_and_differs_between_folders(tmp_path):
    a = make_folder(tmp_path / "fake" / "token2wav")
    b = make_folder(tmp_path / "real" / "token2wav", campplus_bytes=b"a different model")
    assert prompt_key_for(a) == prompt_key_for(a)
    assert prompt_key_for(a) != prompt_key_for(b)
    # A checkpoint folder means its token2wav/ folder.
    assert prompt_key_for(tmp_path / "fake") == prompt_key_for(a)
    assert prompt_key_for(None) == "token2wav"


def test_key_changes_when_a_source_model_is_replaced(tmp_path):
    a = make_folder(tmp_path / "t2w")
    before = prompt_key_for(a)
    (a / "campplus.onnx").write_bytes(b"replaced with a longer file")
    os.utime(a / "campplus.onnx", ns=(1, 1))
    assert prompt_key_for(a) != before
