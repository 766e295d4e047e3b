"""Voice lookup: by example clip (speaker vectors), by timbre description across languages, by name."""
from __future__ import annotations

import pytest

from stepvoice.voice_bank import DEFAULT_VOICE, VoiceBank, default_clip
from stepvoice.voice_bank.starter import S3_CLIPS, s3tokenizer_asset
from voice_fixtures import ESPEAK_VOICES, espeak_clips  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def bank(tmp_path_factory, espeak_clips):  # noqa: F811
    """Starter voices + 7 espeak voices enrolled with their first sentence."""
    b = VoiceBank.open(tmp_path_factory.mktemp("data"))
    for name, (_, _, _, description) in ESPEAK_VOICES.items():
        b.add(espeak_clips[name][0], name, description)
    yield b
    b.close()


def test_starter_bank_and_default_voice(bank):
    names = [v.name for v in bank.list()]
    assert names[0] == DEFAULT_VOICE and "mandarin_deep" in names
    default = bank.get(DEFAULT_VOICE)
    assert default.origin == "starter" and default.clip.is_file() and default_clip().name == S3_CLIPS[0]
    assert any("\u4e00" <= c <= "\u9fff" for c in default.description)  # described in Chinese too


def test_another_clip_of_the_same_voice_comes_back_first(bank, espeak_clips):  # noqa: F811
    for name, (_, other) in espeak_clips.items():
        found = bank.search_like(other, k=2)
        assert found[0].name == name, (name, found)
        assert found[0].score > found[1].score
    # the wheel's second clip of AISHELL speaker S0764 finds the default voice (made from the first)
    assert bank.find_like(s3tokenizer_asset(S3_CLIPS[1])).name == DEFAULT_VOICE


CROSS_LINGUAL = [
    # Chinese queries for voices described in English
    ("尖细、语速快的年轻女孩声音", "bright_girl"),
    ("低沉缓慢的成年男声", "deep_man"),
    ("德国口音的男人", "german_man"),
    # English queries for voices described in Chinese
    ("a woman with a British accent", "british_lady"),
    ("a fast talking energetic young man", "fast_man"),
    ("a sweet soft female voice", "soft_woman"),
    ("a slow hoarse elderly man", "old_man"),
    # starter voices, both languages
    ("新闻主播一样的普通话女声", DEFAULT_VOICE),
    ("a deep slow mandarin voice", "mandarin_deep"),
]


@pytest.mark.parametrize("query, expected", CROSS_LINGUAL)
def test_description_lookup_across_languages(bank, query, expected):
    assert bank.find(query).name == expected


def test_lookup_by_name_is_case_insensitive_and_unknown_names_list_voices(bank):
    assert bank.get("Deep_Man").name == "deep_man"
    with pytest.raises(Exception, match="no voice named 'nobody'.*deep_man"):
        bank.get("nobody")


def test_timbre_rag_switches_to_the_found_voice(bank):
    import asyncio

    from stepvoice.engine.events import ToolCall
    from stepvoice.tools import ToolContext, load_registry, run

    switched = []
    context = ToolContext(voice_bank=bank, on_voice_change=switched.append)
    registry = load_registry()
    call = ToolCall(name="timbre_rag", arguments={"query": "一位说话缓慢、声音沙哑的老爷爷"}, raw="", error=None, id="c1")
    result = asyncio.run(run(call, context, registry))
    assert result.ok and switched == ["old_man"] and "old_man" in result.content
