"""Dataset loaders of `stepvoice eval` on the publishers' own layouts (tiny files made here), and the progress bar."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from stepvoice.assistant.eval.loaders_asr import detect_asr_layout, load_asr, load_librispeech
from stepvoice.assistant.eval.loaders_bench import load_covost, load_mmau, load_toolcall
from stepvoice.assistant.eval.progress import Progress
from stepvoice.engine.errors import StepvoiceError


def touch(p: Path, data: bytes = b"RIFF") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_common_voice_tsv_and_clips(tmp_path):
    lang = tmp_path / "cv-corpus-17.0" / "yue"
    touch(lang / "clips" / "common_voice_yue_2.mp3")
    touch(lang / "clips" / "common_voice_yue_1.mp3")
    (lang / "test.tsv").write_text("client_id\tpath\tsentence\tup_votes\n"
                                   "c\tcommon_voice_yue_2.mp3\t你好\t2\n"
                                   "c\tcommon_voice_yue_1.mp3\t\"早晨\t1\n", encoding="utf-8")
    assert detect_asr_layout(lang) == "commonvoice"
    d = load_asr(lang)
    assert d.key == "commonvoice-yue" and d.language == "yue"
    assert [i.id for i in d.items] == ["common_voice_yue_1", "common_voice_yue_2"]  # sorted: stable order
    assert d.items[0].reference == "\"早晨"  # quotes are text, not CSV quoting
    assert d.items[0].audio == (str(lang / "clips" / "common_voice_yue_1.mp3"),)


def test_fleurs_tsv_without_header(tmp_path):
    lang = tmp_path / "fleurs" / "cmn_hans_cn"
    touch(lang / "audio" / "test" / "123.wav")
    (lang / "test.tsv").write_text("1808\t123.wav\t这是原文。\t这是原文\tz h e\t96000\tFEMALE\n", encoding="utf-8")
    assert detect_asr_layout(lang) == "fleurs"
    d = load_asr(lang)
    assert d.key == "fleurs-zh" and d.language == "zh"
    assert d.items[0].reference == "这是原文。" and d.items[0].audio == (str(lang / "audio" / "test" / "123.wav"),)
    assert load_asr(tmp_path / "fleurs" / "cmn_hans_cn", language="yue").language == "yue"


def test_librispeech_split_and_missing_audio(tmp_path):
    ch = tmp_path / "LibriSpeech" / "test-other" / "1688" / "142285"
    touch(ch / "1688-142285-0000.flac")
    (ch / "1688-142285.trans.txt").write_text("1688-142285-0000 THERE'S IRON THEY SAY\n", encoding="utf-8")
    d = load_librispeech(tmp_path / "LibriSpeech")
    assert d.key == "librispeech-test-other" and d.items[0].group == "test-other"
    clean = tmp_path / "LibriSpeech" / "test-clean" / "61" / "70968"
    touch(clean / "61-70968-0000.flac")
    (clean / "61-70968.trans.txt").write_text("61-70968-0000 HE BEGAN A CONFUSED COMPLAINT\n", encoding="utf-8")
    both = load_librispeech(tmp_path / "LibriSpeech")  # both splits: one figure each
    assert both.key == "librispeech" and [i.group for i in both.items] == ["test-clean", "test-other"]
    (ch / "1688-142285.trans.txt").write_text("1688-142285-0001 NO AUDIO FOR THIS\n", encoding="utf-8")
    with pytest.raises(StepvoiceError, match="no audio file for 1688-142285-0001"):
        load_librispeech(tmp_path / "LibriSpeech")


def test_covost_per_split_file_and_languages(tmp_path):
    touch(tmp_path / "clips" / "a.mp3")
    (tmp_path / "covost_v2.zh-CN_en.test.tsv").write_text(
        "path\tsentence\ttranslation\tclient_id\na.mp3\t你好\tHello\tc\n", encoding="utf-8")
    (tmp_path / "covost_v2.zh-CN_en.train.tsv").write_text("path\tsentence\ttranslation\tclient_id\n", encoding="utf-8")
    d = load_covost(tmp_path)
    assert d.key == "covost2-zh-en" and d.language == "en" and d.source_language == "zh"
    assert [i.reference for i in d.items] == ["Hello"]


def test_toolcall_alternative_fields_and_wav_naming(tmp_path):
    touch(tmp_path / "wav" / "web_search_positive.jsonl-0-0.wav")
    touch(tmp_path / "wav" / "web_search_positive.jsonl-0-1.wav")
    conversation = {"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "who won yesterday"},
        {"role": "assistant", "content": '<tool_call>function\nsearch\n{"query": "比赛 结果"}</tool_call>'},
    ]}
    (tmp_path / "web_search_positive.jsonl").write_text(json.dumps(conversation, ensure_ascii=False) + "\n",
                                                       encoding="utf-8")
    (tmp_path / "web_search_negative.jsonl").write_text(
        json.dumps({"turns": [{"role": "human", "text": "just chat", "audio": "wav/x.wav"}], "gold_call": None}) + "\n",
        encoding="utf-8")
    d = load_toolcall(tmp_path)
    neg, pos = d.items  # files in name order
    assert pos.reference == {"name": "search", "arguments": {"query": "比赛 结果"}}  # from the final assistant turn
    assert pos.audio == (str(tmp_path / "wav" / "web_search_positive.jsonl-0-1.wav"),)
    assert [t.role for t in pos.history] == ["human", "assistant"]
    assert pos.history[0].audio == str(tmp_path / "wav" / "web_search_positive.jsonl-0-0.wav")
    assert pos.extra == {"family": "web_search", "positive": True}
    assert neg.reference is None and neg.extra["positive"] is False and neg.audio == (str(tmp_path / "wav/x.wav"),)
    (tmp_path / "web_search_negative.jsonl").write_text('{"turns": [}\n', encoding="utf-8")
    with pytest.raises(StepvoiceError, match="web_search_negative.jsonl:1: not JSON"):
        load_toolcall(tmp_path)


def test_mmau_needs_its_fields(tmp_path):
    (tmp_path / "mmau-test-mini.json").write_text(json.dumps([{"id": "x", "audio_id": "a.wav"}]), encoding="utf-8")
    with pytest.raises(StepvoiceError, match="item 1 needs audio_id, choices and answer"):
        load_mmau(tmp_path)


def test_progress_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = Progress(4, done=1, label="asr", stream=stream)
        p.update()
        p.close()
    assert pipe.getvalue() == ""
    assert "2/4" in tty.getvalue() and "ETA" in tty.getvalue()
    p = Progress(10, done=4, stream=io.StringIO())
    p.start -= 6.0  # 6 s for the one item done in this run: 5 more items take 30 s
    p.update()
    assert p.eta_s() == pytest.approx(30.0, rel=0.05)
