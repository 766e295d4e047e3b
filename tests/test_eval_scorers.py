"""Scorers and normalisers of `stepvoice eval` against values worked out by hand."""
from __future__ import annotations

import math

import pytest

from stepvoice.assistant.eval.normalise import normalise_en, normalise_zh
from stepvoice.assistant.eval.scorers import (
    ErrorCounts, choice_correct, corpus_bleu, error_counts, error_rate, label_correct, pick_choice,
    score_toolcall, toolcall_metrics,
)


@pytest.mark.parametrize("text, expected", [
    ("Mr. Smith paid $20.", "mister smith paid $20"),
    ("MISTER SMITH PAID TWENTY DOLLARS", "mister smith paid $20"),
    ("twenty dollars and five cents", "$20.05"),
    ("$5 million", "$5000000"),
    ("two thousand and five", "2005"),
    ("one hundred twenty three thousand four hundred fifty six", "123456"),
    ("nineteen ninety", "1990"),  # numbers said in a row are one figure
    ("five six", "56"),
    ("no one knows", "no one knows"),  # a lone "one" stays a word
    ("a hundred people", "a 100 people"),
    ("the nineteen nineties", "the 1990s"),
    ("the twenty first of May", "the 21st of may"),
    ("three point one four", "3.14"),
    ("1,000 people", "1000 people"),
    ("fifty percent", "50%"),
    ("50 %", "50%"),
    ("I won't go, can't go [noise] um okay", "i will not go can not go okay"),
    ("Hello, World!  (laughs)", "hello world"),
    ("Café colour", "cafe color"),
    ("it's John's book", "it is john is book"),  # 's -> is, as Whisper's
    ("I'd say we're gonna win", "i would say we are going to win"),
    ("Dr. Who and St. John", "doctor who and saint john"),
])
def test_english_normaliser(text, expected):
    assert normalise_en(text) == expected


def test_chinese_normaliser_drops_half_and_full_width_punctuation():
    assert normalise_zh("你好，世界！ＡＢＣ１２３。「引号」、《书名》 hello?") == "你好世界abc123引号书名hello"
    assert normalise_zh("今天 天气\u3000很好；“真的”…") == "今天天气很好真的"


def test_wer_counts_after_normalisation():
    # Casing, punctuation and spelled numbers are not errors; one real word substitution is.
    c = error_counts("MISTER SMITH PAID TWENTY ONE DOLLARS", "Mr. Smith paid $21.", "en")
    assert c == ErrorCounts(0, 0, 0, 4)
    c = error_counts("THE CAT SAT ON THE MAT", "The cat sat on a mat.", "en")
    assert c == ErrorCounts(1, 0, 0, 6)
    c = error_counts("HELLO WORLD", "hello big world", "en")
    assert c == ErrorCounts(0, 0, 1, 2)
    c = error_counts("HELLO BIG WORLD", "", "en")
    assert c == ErrorCounts(0, 3, 0, 3)


def test_corpus_wer_is_errors_over_words_not_mean_of_rates():
    a = error_counts("the cat sat on the mat", "the cat sat on a mat", "en")  # 1/6
    b = error_counts("hello world", "goodbye", "en")  # 1 sub + 1 del over 2
    assert error_rate([a, b]) == pytest.approx(100 * 3 / 8)


def test_cer_on_characters_with_full_width_punctuation():
    c = error_counts("今天天气很好。", "今天天汽很好！", "zh")
    assert c == ErrorCounts(1, 0, 0, 6)
    assert error_rate([c]) == pytest.approx(100 / 6)
    c = error_counts("你好世界", "你好，世", "zh")
    assert c == ErrorCounts(0, 1, 0, 4)
    c = error_counts("ＡＩ很好", "ai 很 好", "zh")  # full-width Latin = half-width; spaces ignored
    assert c.errors == 0 and c.reference == 4


def test_bleu_matches_hand_computation_and_uses_zh_tokenizer_for_chinese():
    # All n-gram precisions are 1; only the brevity penalty exp(1 - r/c) applies.
    score, sig = corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat today"], "en")
    assert score == pytest.approx(100 * math.exp(1 - 7 / 6), abs=1e-6)
    assert "tok:13a" in sig
    # zh tokenizer: one token per character (4 vs 7); 13a would see one "word" each and score 0.
    score, sig = corpus_bleu(["我爱北京"], ["我爱北京天安门"], "zh")
    assert score == pytest.approx(100 * math.exp(1 - 7 / 4), abs=1e-6)
    assert "tok:zh" in sig
    assert corpus_bleu(["我爱北京"], ["我爱北京天安门"], "en")[0] == 0.0


def test_toolcall_metrics_as_stepeval_defines_them():
    weather = {"name": "get_weather", "arguments": {"location": "Paris"}}
    outcomes = [
        score_toolcall([{"name": "get_weather", "arguments": {"location": "paris"}}], "get_weather", True, weather),
        score_toolcall([], "get_weather", True, weather),  # missed
        score_toolcall([{"name": "get_weather", "arguments": {"location": "London"}}], "get_weather", True, weather),
        score_toolcall([{"name": "search", "arguments": {"query": "x"}}], "get_weather", True, weather),  # wrong tool
        score_toolcall([], "get_weather", False, None),  # rightly silent
        score_toolcall([{"name": "get_weather", "arguments": {"location": "Rome"}}], "get_weather", False, None),  # FP
        score_toolcall([{"name": "search", "arguments": {"query": "y"}}], "get_weather", False, None),  # other tool: ok
    ]
    m = toolcall_metrics(outcomes)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 1)
    assert m["trigger_precision"] == pytest.approx(75.0)
    assert m["trigger_recall"] == pytest.approx(75.0)
    assert m["type_accuracy"] == pytest.approx(100 * 2 / 3)
    assert m["parameter_accuracy"] == pytest.approx(50.0)
    # get_date_time has no parameters: parameter accuracy is N/A, not 100.
    dt = score_toolcall([{"name": "get_date_time", "arguments": {}}], "get_date_time", True,
                        {"name": "get_date_time", "arguments": {}})
    assert dt.params_ok is None and toolcall_metrics([dt])["parameter_accuracy"] is None
    # stepvoice's web search is called `search`; StepEval's family is web_search.
    assert score_toolcall([{"name": "search", "arguments": {"query": "a b"}}], "web_search", True,
                          {"name": "web_search", "arguments": {"query": "A  B"}}).params_ok is True


def test_multiple_choice_picking():
    choices = ["Dog barking", "Rock music", "Music", "Speech"]
    assert pick_choice("B", choices) == 1
    assert pick_choice("(c) Music", choices) == 2
    assert pick_choice("I think it's rock music.", choices) == 1  # "music" nested in "rock music"
    assert pick_choice("<RESPONSE>Speech</RESPONSE>", choices) == 3
    assert pick_choice("dog barking or speech", choices) is None  # ambiguous: not counted as right
    assert pick_choice("a violin", choices) is None
    assert choice_correct("The answer is: rock music", choices, "Rock music")
    assert not choice_correct("music", choices, "Rock music")
    assert label_correct("说话人是一位男性，语速较快", "男性")
    assert not label_correct("说话人是一位女性", "男性")


# A reference for the normaliser: the `whisper-normalizer` package (a port of OpenAI Whisper's
# EnglishTextNormalizer), installed with the test extra. Ours is written from the behaviour; these
# pairs pin that both score alike.
WHISPER_PAIRS = [
    ("MISTER SMITH PAID TWENTY ONE DOLLARS", "Mr. Smith paid $21."),
    ("HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS", "He hoped there would be stew for dinner, turnips and carrots."),
    ("IN THE YEAR EIGHTEEN HUNDRED AND FIFTY", "In the year 1850."),
    ("TWENTY ONE PEOPLE CAME IN NINETEEN NINETY", "21 people came in 1990"),
    ("I WON'T GO THERE IT'S TOO FAR", "I will not go there, it is too far!"),
    ("THE COLOUR OF THE SKY", "The color of the sky."),
    ("FIFTY PERCENT OF THEM ARE HERE", "50% of them were here."),
    ("THE FIRST TIME WE MET", "The 1st time we met"),
    ("DOCTOR WATSON CAME IN", "Dr. Watson came in."),
    ("ONE HUNDRED AND FIVE MEN", "105 men"),
    ("NO ONE KNOWS THE TWO OR THREE", "No one knows the 2 or 3."),
    ("UM I THINK SO", "I think, uh, so."),
    ("A THOUSAND YEARS AGO", "1000 years ago"),
    ("THE NINETEEN NINETIES", "the 1990s"),
    ("WE'RE GONNA WIN", "We are going to win."),
    ("THREE POINT FIVE MILES", "3.5 miles away"),
    ("HELLO WORLD", "hello big world"),
    ("TWENTY DOLLARS AND FIFTY CENTS", "$20.50"),
]


@pytest.mark.parametrize("reference, hypothesis", WHISPER_PAIRS)
def test_english_scoring_agrees_with_whisper_normaliser(reference, hypothesis):
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    whisper = EnglishTextNormalizer()
    ref, hyp = whisper(reference), whisper(hypothesis)
    assert normalise_en(reference) == ref and normalise_en(hypothesis) == hyp
    expected = jiwer.process_words(ref, hyp)
    got = error_counts(reference, hypothesis, "en")
    assert (got.substitutions, got.deletions, got.insertions, got.reference) == (
        expected.substitutions, expected.deletions, expected.insertions, len(ref.split()))
