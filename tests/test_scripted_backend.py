import asyncio

import pytest

from stepvoice.engine.backends.scripted import ScriptedBackend
from stepvoice.engine.errors import ConfigError
from stepvoice.engine.events import SpeechCodes, TextDelta, ToolCall, TurnEnd
from stepvoice.engine.messages import Message
from stepvoice.engine.options import GenerationOptions


async def collect(backend, cancel=None):
    return [e async for e in backend.generate([Message.text("human", "hi")], GenerationOptions(), cancel)]


def test_plays_replies_in_order_then_says_exhausted(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        "replies:\n"
        "  - text: Let me check.\n"
        "    tool_calls: [{name: get_weather, arguments: {location: Paris}}]\n"
        "  - text: Sunny in Paris\n"
        "    speech_codes: [1, 2, 3, 4, 5, 6]\n"
    )
    b = ScriptedBackend.from_file(f)
    first = asyncio.run(collect(b))
    assert "".join(e.text for e in first if isinstance(e, TextDelta)) == "Let me check."
    calls = [e for e in first if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"location": "Paris"})]
    assert calls[0].raw.startswith("<tool_call>function\nget_weather\n")
    assert isinstance(first[-1], TurnEnd) and first[-1].reason == "stop"

    second = asyncio.run(collect(b))
    texts = [e for e in second if isinstance(e, TextDelta)]
    assert {t.channel for t in texts} == {"speech"}
    assert "".join(t.text for t in texts) == "Sunny in Paris"
    codes = [c for e in second if isinstance(e, SpeechCodes) for c in e.codes]
    assert codes == [1, 2, 3, 4, 5, 6]

    third = asyncio.run(collect(b))
    assert len(third) == 1 and third[0].reason == "script_exhausted"
    assert len(b.requests) == 3


def test_cancel_stops_between_events():
    b = ScriptedBackend.from_data({"replies": [{"text": "one two three four five", "delay_ms": 1}]})
    cancel = asyncio.Event()

    async def run():
        out = []
        async for e in b.generate([], GenerationOptions(), cancel):
            out.append(e)
            if len(out) == 2:
                cancel.set()
        return out

    out = asyncio.run(run())
    assert isinstance(out[-1], TurnEnd) and out[-1].reason == "cancelled"
    assert len([e for e in out if isinstance(e, TextDelta)]) == 2


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("replies: [{text: a, speech_codes: [7000]}]", "0..6560"),
        ("replies: [{bogus: 1}]", "unknown key"),
        ("replies: {text: a}", "'replies' list"),
        ("replies:\n  - text: [unclosed\n", "line"),
    ],
)
def test_bad_scripts_give_one_clear_error(tmp_path, text, fragment):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        ScriptedBackend.from_file(f)
