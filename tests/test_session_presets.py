"""Task presets: the official system prompts and sampling reach the engine."""
from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np
import pytest

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.presets import chat_system_prompt, preset
from stepvoice.assistant.session import Session
from stepvoice.engine.backends.scripted import ScriptedBackend
from stepvoice.engine.errors import ConfigError
from stepvoice.tools import load_registry


def run(session, user_input, **kw):
    async def go():
        return [e async for e in session.respond(user_input, **kw)]

    return asyncio.run(go())


def audio() -> np.ndarray:
    return (0.1 * np.sin(np.arange(16000) / 9)).astype(np.float32)


def test_chat_prompt_is_the_official_tool_prompt_with_todays_date():
    text = chat_system_prompt(with_tools=True, spoken=True, today=dt.date(2025, 8, 28))
    lines = text.split("\n")
    assert lines[0] == "你的名字叫做小跃，是由阶跃星辰公司训练出来的语音大模型。"
    assert lines[1].startswith("你具备调用工具解决问题的能力")
    assert "今天是2025年8月28日，星期四" in lines and lines[-1] == "请用默认女声与用户交流"
    bare = chat_system_prompt(with_tools=False, spoken=False, today=dt.date(2025, 8, 31), language="en")
    assert "tools" not in bare and "Today is Sunday, August 31, 2025." in bare


def test_session_sends_the_preset_prompt_and_sampling():
    backend = ScriptedBackend.from_data({"replies": ["a", "b", "c", "d"]})
    asr = Session(backend, task="asr", tools=load_registry())
    run(asr, audio())
    run(asr, audio())
    (first, o1), (second, o2) = backend.requests
    assert [m.role for m in first] == ["system", "human"] and first[0].plain_text == "请记录下你所听到的语音内容。"
    assert o1.temperature == 0.0 and o1.repetition_penalty is None and o1.reply == "text"  # greedy, no penalty
    assert [m.role for m in second] == ["system", "human"]  # one-shot: earlier turns are not sent

    tr = Session(backend, task="translate", target_lang="en")
    run(tr, audio(), reply="speech")
    msgs, opts = backend.requests[2]
    assert msgs[0].plain_text == "请仔细聆听这段语音，然后将其内容翻译成英文并用语音播报。"
    # S2ST samples at 0.7 (examples.py line 41); text translation at 0.1 (line 19)
    assert opts.temperature == 0.7 and opts.top_p is None and opts.reply == "speech"

    chat = Session(backend, tools=load_registry(), generation={"temperature": 0.2, "seed": 7})
    run(chat, "hello")
    msgs, opts = backend.requests[3]
    assert [m.role for m in msgs] == ["system", "tool_json_schemas", "human"]
    assert opts.temperature == 0.2 and opts.seed == 7 and opts.top_p == 0.9 and opts.repetition_penalty == 1.05


def test_configured_system_prompt_and_persona():
    backend = ScriptedBackend.from_data({"replies": ["a", "b"]})
    run(Session(backend, config=AssistantConfig(system_prompt="You are Nova.")), "hi")
    assert backend.requests[0][0][0].plain_text == "You are Nova."
    run(Session(backend, config=AssistantConfig(persona="You are Nova, a ship's computer.")), "hi")
    assert backend.requests[1][0][0].plain_text.startswith("You are Nova, a ship's computer.\n")


def test_bad_presets_are_clear():
    with pytest.raises(ConfigError, match="target language"):
        preset("translate")
    with pytest.raises(ConfigError, match="unknown task"):
        Session(ScriptedBackend.from_data({"replies": []}), task="sing")
    assert preset("caption").system_prompt == "Please briefly explain the important events involved in this audio clip."
    assert preset("think").reply == "think"
