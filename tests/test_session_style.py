"""Style control: every way of setting a style puts the same line at the end of the system prompt,
phrased like the official example's last line ("请用默认女声与用户交流")."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from websockets.asyncio.client import connect

from stepvoice.assistant.config import AssistantConfig
from stepvoice.assistant.presets import chat_system_prompt
from stepvoice.assistant.session import Session
from stepvoice.assistant.style import PRESETS, style_line
from stepvoice.assistant.tasks import load_tasks
from stepvoice.engine.backends.scripted import ScriptedBackend
from stepvoice.engine.messages import Message
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.prompt import build_prompt

from server_support import LoopbackServer

SLOW_ZH = "请用缓慢的语速与用户交流"
WHISPER_EN = "Please talk with the user in a soft whisper."


def script(*replies) -> ScriptedBackend:
    return ScriptedBackend.from_data({"replies": list(replies)})


_TOK = []


def tokenizer():
    """The fake checkpoint's tokenizer (real special ids)."""
    if not _TOK:
        import tempfile

        from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

        folder = tempfile.mkdtemp()
        write_fake_tokenizer(folder)
        _TOK.append(load_tokenizer(folder))
    return _TOK[0]


def system_of(backend: ScriptedBackend, i: int = -1) -> str:
    """The system text of request `i`, after checking that the ids the model reads for it equal the
    hand-built sequence `<|BOT|>system\n{text}<|EOT|>`."""
    messages, options = backend.requests[i]
    assert messages[0].role == "system"
    text = messages[0].plain_text
    tok = tokenizer()
    ids = build_prompt(messages, tok, GenerationOptions(reply=options.reply)).ids
    hand = tok.encode("<|BOT|>system\n" + text + "<|EOT|>")
    assert ids[: len(hand)] == hand
    return text


def ask(session: Session, text: str, **kw) -> None:
    async def go():
        return [e async for e in session.respond(text, **kw)]
    asyncio.run(go())


def test_presets_are_phrased_as_the_official_voice_line_and_free_text_is_kept():
    assert style_line("slow") == SLOW_ZH
    assert style_line("Whisper", "en") == WHISPER_EN
    assert all(style_line(name).startswith("请用") and style_line(name).endswith("与用户交流") for name in PRESETS)
    assert style_line("like a tired pirate,\n  drawling") == "like a tired pirate, drawling"  # one line
    assert style_line("  ") is None and style_line(None) is None


def test_config_constructor_and_turn_styles_end_the_system_prompt(fake_checkpoint):
    from stepvoice.engine.tokenizer import load_tokenizer

    tok = load_tokenizer(fake_checkpoint)
    backend = script("a", "b", "c", "d")
    session = Session(backend, config=AssistantConfig(style="slow"))  # config `style`
    ask(session, "hi", reply="speech")
    base = chat_system_prompt(with_tools=False, spoken=True, today=dt.date.today())
    assert base.endswith("请用默认女声与用户交流")
    sent = backend.requests[-1][0]
    # the ids the model reads, against a hand-built sequence of the system turn
    ids = build_prompt(sent, tok, GenerationOptions(reply="speech")).ids
    system_ids = tok.encode("<|BOT|>system\n" + base + "\n" + SLOW_ZH + "<|EOT|>")
    assert ids[: len(system_ids)] == system_ids

    ask(session, "again", reply="speech", style="like a pirate")  # one turn only, free text
    assert system_of(backend) == base + "\nlike a pirate"
    ask(session, "and now", reply="speech")
    assert system_of(backend) == base + "\n" + SLOW_ZH

    backend = script("a")
    session = Session(backend, config=AssistantConfig(style="slow", language="en",
                                                      system_prompt="You are Ada."), style="whisper")
    ask(session, "hi")  # the constructor beats the config; a configured system prompt keeps its words
    assert system_of(backend) == "You are Ada.\n" + WHISPER_EN


def test_tasks_yaml_style_per_task_and_per_turn(tmp_path):
    f = tmp_path / "TASKS.yaml"
    f.write_text("tasks:\n  - name: t\n    style: sad\n    turns:\n      - hello\n"
                 "      - {text: quietly now, style: whisper}\n      - back to sad\n")
    (task,) = load_tasks(f).tasks
    assert task.style == "sad" and [t.style for t in task.turns] == [None, "whisper", None]
    backend = script("a", "b", "c")
    session = Session(backend, style=task.style)  # as TaskRunner.session_for / run_turn pass them
    for turn in task.turns:
        ask(session, turn.text, style=turn.style)
    lines = [system_of(backend, i).splitlines()[-1] for i in range(3)]
    assert lines == [style_line("sad"), style_line("whisper"), style_line("sad")]
    bad = tmp_path / "BAD.yaml"
    bad.write_text("tasks:\n  - name: t\n    style: 3\n    turns: [hi]\n")
    with pytest.raises(Exception, match="style"):
        load_tasks(bad)


def test_realtime_session_update_instructions_reach_the_prompt_with_the_style():
    from stepvoice.assistant.server.sessions import AssistantSessions

    backends: list[ScriptedBackend] = []

    def new_backend():
        backends.append(script({"text": "Arr."}))
        return backends[-1]

    factory = AssistantSessions(new_backend, config=AssistantConfig(style="excited", language="en"),
                                model_name="stepvoice-test")
    server = LoopbackServer(factory)

    async def go():
        async with connect(server.ws_base + "/realtime") as ws:
            async def until(kind):
                while True:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    assert ev["type"] != "error", ev
                    if ev["type"] == kind:
                        return ev
            await until("session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"], "instructions": "You are a pirate."}}))
            await until("session.updated")
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Ahoy?"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            done = await until("response.done")
            assert done["response"]["usage"]["input_token_details"]["cached_tokens"] == 0  # scripted: no cache
    try:
        asyncio.run(go())
    finally:
        server.close()
    assert system_of(backends[-1]) == "You are a pirate.\n" + style_line("excited", "en")


@pytest.mark.parametrize("command", ["ask", "chat", "run", "serve"])
def test_flags_become_config_overrides(command, tmp_path):
    from stepvoice.assistant.cli import build_parser
    from stepvoice.assistant.cli.config import common_overrides
    from stepvoice.assistant.config import load_config

    extra = {"ask": ["--text", "hi"], "chat": [], "run": [str(tmp_path / "TASKS.yaml")], "serve": []}[command]
    args = build_parser().parse_args([command, *extra, "--style", "whisper", "--no-prefix-cache", "--no-speculate"])
    over = common_overrides(args)
    assert (over["style"], over["prefix_cache"], over["speculate"]) == ("whisper", False, False)
    cfg = load_config(None, {**over, "data_dir": str(tmp_path)}, env={})
    assert (cfg.style, cfg.prefix_cache, cfg.speculate) == ("whisper", False, False)
    plain = common_overrides(build_parser().parse_args([command, *extra]))
    assert (plain["style"], plain["prefix_cache"], plain["speculate"]) == (None, None, None)
