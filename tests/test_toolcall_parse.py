"""parse_tool_calls: the official format, several calls, broken JSON, tags in strings,
trailing text, cut-off calls; never raises, never loses text."""
from __future__ import annotations

import pytest

from stepvoice.engine.events import ToolCall
from stepvoice.engine.toolcall import CLOSE, OPEN, format_tool_call, parse_tool_calls, scan_call_end


def call(name, args_json):
    return f"<tool_call>function\n{name}\n{args_json}</tool_call>"


W = call("get_weather", '{"location": "Paris"}')
D = call("get_date_time", "{}")
S = call("search", '{"query": "latest news"}')

# (text, expected outside text, [(name, arguments, error substring or None)])
CASES = [
    ("Hello there.", "Hello there.", []),
    ("", "", []),
    (W, "", [("get_weather", {"location": "Paris"}, None)]),
    ("Let me check. " + W, "Let me check. ", [("get_weather", {"location": "Paris"}, None)]),
    (W + " One moment.", " One moment.", [("get_weather", {"location": "Paris"}, None)]),
    ("a" + W + "b" + D + "c", "abc", [("get_weather", {"location": "Paris"}, None), ("get_date_time", {}, None)]),
    (W + S + D, "", [("get_weather", {"location": "Paris"}, None), ("search", {"query": "latest news"}, None),
                     ("get_date_time", {}, None)]),
    ("好的，我来查一下。<tts_end>" + W, "好的，我来查一下。<tts_end>", [("get_weather", {"location": "Paris"}, None)]),
    ("<tts_end>" + S + "<|EOT|>", "<tts_end><|EOT|>", [("search", {"query": "latest news"}, None)]),
    (call("search", '{"query": "北京今天天气"}'), "", [("search", {"query": "北京今天天气"}, None)]),
    ("我帮你搜索" + call("search", '{"query": "长城 历史"}') + "稍等", "我帮你搜索稍等", [("search", {"query": "长城 历史"}, None)]),
    # JSON strings containing the tags do not end the call
    (call("search", '{"query": "what does </tool_call> mean"}') + "tail", "tail",
     [("search", {"query": "what does </tool_call> mean"}, None)]),
    (call("search", '{"query": "a <tool_call> b"}'), "", [("search", {"query": "a <tool_call> b"}, None)]),
    (call("search", r'{"query": "quote \" and </tool_call>"}'), "", [("search", {"query": 'quote " and </tool_call>'}, None)]),
    # near-JSON repaired
    (call("get_weather", "{'location': 'Paris'}"), "", [("get_weather", {"location": "Paris"}, None)]),
    (call("get_weather", '{"location": "Paris",}'), "", [("get_weather", {"location": "Paris"}, None)]),
    (call("get_weather", '{location: "Paris"}'), "", [("get_weather", {"location": "Paris"}, None)]),
    (call("get_weather", '{"location": "Paris"'), "", [("get_weather", {"location": "Paris"}, None)]),
    (call("get_weather", '{"location": "Paris"}}'), "", [("get_weather", {"location": "Paris"}, None)]),
    # unrecoverable or non-object arguments: reported, not raised
    (call("get_weather", "this is not json"), "", [("get_weather", {}, "could not parse")]),
    (call("search", '["a", "b"]'), "", [("search", {}, "got a list")]),
    (call("search", '"latest news"'), "", [("search", {}, "got a string")]),
    (call("search", "42"), "", [("search", {}, "got a number")]),
    (call("search", "null"), "", [("search", {}, "got null")]),
    # names
    (call("", '{"query": "x"}'), "", [("", {"query": "x"}, "no function name")]),
    ("<tool_call>function\n  get_weather  \n{\"location\": \"Oslo\"}</tool_call>", "",
     [("get_weather", {"location": "Oslo"}, None)]),
    ("<tool_call>function\nget_date_time</tool_call>", "", [("get_date_time", {}, None)]),
    ("<tool_call>function\nget_date_time\n</tool_call>", "", [("get_date_time", {}, None)]),
    ("<tool_call>get_weather\n{\"location\": \"Rome\"}</tool_call>", "", [("get_weather", {"location": "Rome"}, None)]),
    ("<tool_call>function\nget_weather {\"location\": \"Rome\"}</tool_call>", "",
     [("get_weather", {"location": "Rome"}, None)]),
    ('<tool_call>{"name": "search", "arguments": {"query": "x"}}</tool_call>', "", [("search", {"query": "x"}, None)]),
    (call("search", '"{\\"query\\": \\"double\\"}"'), "", [("search", {"query": "double"}, None)]),
    # multi-line pretty JSON
    (call("search", '{\n  "query": "x",\n  "n": 3\n}'), "", [("search", {"query": "x", "n": 3}, None)]),
    # cut off at the end of the text
    ("Checking " + "<tool_call>function\nget_weather\n{\"location\": \"Paris\"}", "Checking ",
     [("get_weather", {"location": "Paris"}, None)]),
    ("<tool_call>function\nsearch\n{\"query\": \"lat", "", [("search", {"query": "lat"}, "cut off")]),
    ("<tool_call>function\nsear", "", [("sear", {}, None)]),
    ("<tool_call>", "", [("", {}, "no function name")]),
    # a call never closed before the next one began
    ("<tool_call>function\nget_date_time\n{}" + W, "", [("get_date_time", {}, None), ("get_weather", {"location": "Paris"}, None)]),
    # unbalanced quote: the first raw close still ends the call, the text after it survives
    (call("search", '{"query": "unterminated}') + " after", " after", [("search", {"query": "unterminated"}, None)]),
    # a stray close tag outside any call is text
    ("done</tool_call> ok", "done</tool_call> ok", []),
]


@pytest.mark.parametrize("text, outside, expected", CASES)
def test_parse(text, outside, expected):
    got_text, calls = parse_tool_calls(text)
    assert got_text == outside
    assert [(c.name, c.arguments) for c in calls] == [(n, a) for n, a, _ in expected]
    for c, (_, _, err) in zip(calls, expected):
        assert isinstance(c, ToolCall)
        if err is None:
            assert c.error is None
        else:
            assert c.error and err in c.error
        assert c.raw.startswith(OPEN) and c.raw in text
    # nothing lost: outside text + raw calls rebuild the input
    assert len(got_text) + sum(len(c.raw) for c in calls) == len(text)


def test_ids_are_unique_and_format_round_trips():
    text = format_tool_call("get_weather", {"location": "東京"}) + format_tool_call("get_date_time", {})
    assert "東京" in text
    _, calls = parse_tool_calls(text)
    assert [c.name for c in calls] == ["get_weather", "get_date_time"]
    assert calls[0].arguments == {"location": "東京"}
    assert len({c.id for c in calls}) == 2


def test_never_raises_on_junk():
    junk = [OPEN * 5, CLOSE * 3, OPEN + "\x00\x01" + CLOSE, OPEN + "function\n" + "{" * 500 + CLOSE,
            OPEN + "function\nx\n" + '"' * 7, "<tool_call" + "function", OPEN + "\n\n\n" + CLOSE]
    for text in junk:
        outside, calls = parse_tool_calls(text)
        assert isinstance(outside, str) and all(isinstance(c, ToolCall) for c in calls)


def test_scan_call_end():
    body = 'function\nsearch\n{"q": "</tool_call>"}</tool_call>rest'
    end, kind = scan_call_end(body, 0)
    assert kind == "close" and body[end:].startswith(CLOSE + "rest")
    assert scan_call_end('function\nsearch\n{"q": "open', 0) == (-1, "")
    text = 'function\na\n{}<tool_call>function'
    assert scan_call_end(text, 0) == (text.index(OPEN), "open")
