"""Conformance with the official code: every official example's message list, replayed.

Each fixture below is the message list of one official example, written in the
official dict form (our own audio, search result and ids stand in for the
example's files). For each one this checks, against values derived from the
official code's rules (stepfun-ai/Step-Audio2 at commit 7c58630; StepFun's vLLM
fork, branch step-audio2-mini):
- prompt ids: what stepvoice builds (through the product's own paths: presets,
  tool schemas, tool-result turns, reply history) equals `official_ids`, a
  re-statement of the official chat template (rules cited there);
- stop conditions: generation ends on <|EOT|>, which is not kept in the reply's ids
  (a scripted id stream through the local backend);
- effective options: the task preset's sampling, filled by the local backend,
  equals what transformers' own `_prepare_generation_config` makes of the
  example's keyword arguments, without and with a generation_config.json.
Think mode end to end lives in tests/test_conformance_think.py; the default voice in
tests/test_conformance_voice.py.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import numpy as np
import pytest

from stepvoice.assistant.config import AssistantConfig, ToolLoopConfig
from stepvoice.assistant.history import History, ReplyRecord
from stepvoice.assistant.presets import preset
from stepvoice.assistant.request import RequestBuilder
from stepvoice.assistant.tool_loop import ToolRunner
from stepvoice.engine.backends.local import LocalBackend
from stepvoice.engine.events import ToolResult, TurnEnd
from stepvoice.engine.messages import Audio, Message, Text
from stepvoice.engine.options import GenerationOptions, read_generation_config
from stepvoice.engine.prompt import build_prompt, think_continuation, tool_schemas_message
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer
from scripted_logits import ScriptedLogits

SR = 16000
PIECE = SR * 25  # utils/stepaudio2.py line 113: audio is cut into 25 s pieces


# ---- the official rules, restated -------------------------------------------------------


def official_token_num(frames: int) -> int:
    """utils.py lines 56-69 (compute_token_num): mel frames -> <audio_patch> count."""
    length = frames - 2
    encoded = (length + 1) // 2 // 2
    return (encoded + 2 * 1 - 3) // 2 + 1


def official_ids(tok, messages: list[dict]) -> list[int]:
    """StepAudio2.apply_chat_template (stepaudio2.py lines 94-127) + tokenization (lines 17-26):
    - "user" is renamed "human" (line 100-101);
    - string content: ONE piece "<|BOT|>{role}\\n{content}" + "<|EOT|>" unless eot is False (103-105);
    - list content: "<|BOT|>{role}\\n", then one piece per item (text as is; audio as
      "<audio_start>" + n x "<audio_patch>" + "<audio_end>" per 25 s piece, n from the mel length,
      utils.py line 33-54: 479 samples of right padding, hop 160, last frame dropped; token ids
      as they are), then "<|EOT|>" unless eot is False (106-121);
    - None content: "<|BOT|>{role}\\n" (122-123);
    - each string piece is tokenized ON ITS OWN and the ids concatenated (lines 19-26)."""
    pieces: list = []
    for msg in messages:
        role = "human" if msg["role"] == "user" else msg["role"]
        content = msg["content"]
        if isinstance(content, str):
            pieces.append(f"<|BOT|>{role}\n{content}" + ("<|EOT|>" if msg.get("eot", True) else ""))
        elif isinstance(content, list):
            pieces.append(f"<|BOT|>{role}\n")
            for item in content:
                if item["type"] == "text":
                    pieces.append(item["text"])
                elif item["type"] == "audio":
                    samples = item["audio"]
                    for i in range(0, len(samples), PIECE):
                        frames = (len(samples[i:i + PIECE]) + 479) // 160
                        pieces.append("<audio_start>" + "<audio_patch>" * official_token_num(frames) + "<audio_end>")
                elif item["type"] == "token":
                    pieces.append(list(item["token"]))
            if msg.get("eot", True):
                pieces.append("<|EOT|>")
        else:
            assert content is None
            pieces.append(f"<|BOT|>{role}\n")
    ids: list[int] = []
    for p in pieces:
        ids += tok.encode(p) if isinstance(p, str) else p
    return ids


class _ModelWithConfig:
    """What transformers' `_prepare_generation_config` reads from a model."""

    def __init__(self, generation_config):
        self.generation_config = generation_config

    class config:  # noqa: N801 - the attribute name transformers reads
        @staticmethod
        def _get_generation_parameters():
            return {}


def official_effective(kwargs: dict, generation_config_json: dict | None) -> dict:
    """transformers' own merge of the official call (stepaudio2.py lines 46-53: GenerationConfig from
    max_new_tokens=2048 + the example's kwargs, passed to generate()) with the checkpoint's
    generation_config.json, as stepvoice reports it (greedy = temperature 0)."""
    from transformers import GenerationConfig
    from transformers.generation.utils import GenerationMixin

    call = GenerationConfig(**{"max_new_tokens": 2048, "pad_token_id": 151643, "eos_token_id": 151665, **kwargs})
    model_config = GenerationConfig(**(generation_config_json or {}))
    gc, _ = GenerationMixin._prepare_generation_config(_ModelWithConfig(model_config), call)
    return {"temperature": float(gc.temperature) if gc.do_sample else 0.0, "top_p": float(gc.top_p),
            "top_k": int(gc.top_k), "repetition_penalty": float(gc.repetition_penalty)}


# ---- fixtures: the official examples' message lists ---------------------------------------


def clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


GREAT_WALL = clip(2.3, 1)
LONG = clip(27.0, 2)  # two 25 s pieces
ROUND1, ROUND2 = clip(3.1, 3), clip(4.2, 4)
STOCKS = clip(2.0, 5)
MUSIC = clip(5.0, 6)
SYSTEM = "You are a helpful assistant."
TOOL_SYSTEM = ("你的名字叫做小跃，是由阶跃星辰公司训练出来的语音大模型。\n你具备调用工具解决问题的能力，你需要根据用户的需求和上下文情景，"
               "自主选择是否调用系统提供的工具来协助用户。\n你情感细腻，观察能力强，擅长分析用户的内容，并作出善解人意的回复，"
               "说话的过程中时刻注意用户的感受，富有同理心，提供多样的情绪价值。\n今天是2025年8月28日，星期四\n请用默认女声与用户交流")
TOOLS_JSON = ('[{"type": "function", "function": {"name": "search", "description": "搜索工具", "parameters": '
              '{"type": "object", "properties": {"query": {"type": "string", "description": "搜索关键词"}}, '
              '"required": ["query"], "additionalProperties": false}}}]')
SEARCH_RESULT = "快讯：今日上证指数开盘报3800.12点，小幅下跌。"  # our own stand-in for assets/search_result.txt
SUMMARY = "\n\n\n请用口语化形式总结检索结果，简短地回答用户的问题。"
SPEAK = {"role": "assistant", "content": "<tts_start>", "eot": False}
ANSWER = {"role": "assistant", "content": None}


def audio(samples):
    return {"type": "audio", "audio": samples}


def spoken_ids(tok, text: str, codes: list[int], tail: str = "") -> list[int]:
    """A TA4 reply as the model writes it (1 text id + 4 speech ids per group, <tts_end>, tail)."""
    t = tok.encode(text)
    out: list[int] = []
    for g in range(max(len(t), (len(codes) + 3) // 4)):
        out.append(t[g] if g < len(t) else tok.tts_pad_id)
        group = tok.ids_of_codes(codes[4 * g: 4 * g + 4])
        out += group + [tok.audio_pad_id] * (4 - len(group))
    return out + [tok.tts_end_id] + (tok.encode(tail) if tail else [])


def examples(tok) -> dict[str, dict]:
    """name -> {"messages" (official form), "kwargs" (the generate() call), "task": (task, reply, lang)
    or None, "where": file and lines}."""
    reply1 = spoken_ids(tok, "长城很长。", list(range(40, 61)))  # what `tokens` holds: the EOT already dropped
    call = spoken_ids(tok, "我查一下。", [7, 8, 9, 10, 11],
                      tail='<tool_call>function\nsearch\n{"query": "上证指数 开盘价"}</tool_call>')
    chat = dict(temperature=0.7, repetition_penalty=1.05, top_p=0.9, do_sample=True)
    return {
        "text_chat": dict(where="stepaudio2.py 137-142", kwargs=dict(max_new_tokens=256, **chat), task=("chat", "text", None),
                          messages=[{"role": "system", "content": SYSTEM},
                                    {"role": "human", "content": "Give me a brief introduction to the Great Wall."}, ANSWER]),
        "text_to_speech": dict(where="stepaudio2.py 147-152", kwargs=dict(max_new_tokens=4096, **chat),
                               task=("chat", "speech", None),
                               messages=[{"role": "system", "content": SYSTEM},
                                         {"role": "human", "content": "Give me a brief introduction to the Great Wall."},
                                         SPEAK]),
        "speech_to_text": dict(where="stepaudio2.py 161-166", kwargs=dict(max_new_tokens=256, **chat),
                               task=("chat", "text", None),
                               messages=[{"role": "system", "content": SYSTEM},
                                         {"role": "human", "content": [audio(GREAT_WALL)]}, ANSWER]),
        "speech_to_speech": dict(where="stepaudio2.py 171-176", kwargs=dict(max_new_tokens=4096, **chat),
                                 task=("chat", "speech", None),
                                 messages=[{"role": "system", "content": SYSTEM},
                                           {"role": "human", "content": [audio(LONG)]}, SPEAK]),
        "multi_turn_spoken_history": dict(
            where="stepaudio2.py 185-192", kwargs=dict(max_new_tokens=256, **chat), task=("chat", "text", None),
            messages=[{"role": "system", "content": SYSTEM}, {"role": "human", "content": [audio(GREAT_WALL)]},
                      {"role": "assistant", "content": [{"type": "text", "text": "<tts_start>"},
                                                        {"type": "token", "token": reply1}]},
                      {"role": "human", "content": "Now write a 4-line poem about it."}, ANSWER]),
        "multi_modal": dict(where="stepaudio2.py 197-203", kwargs=dict(max_new_tokens=256, **chat),
                            task=("chat", "text", None),
                            messages=[{"role": "system", "content": SYSTEM},
                                      {"role": "human", "content": [{"type": "text", "text": "Translate the speech into Chinese."},
                                                                    audio(GREAT_WALL)]}, ANSWER]),
        # examples.py line 8 passes no do_sample: greedy (HF's default); examples-vllm.py line 12 says
        # temperature=0 outright, so the preset is greedy even when a generation_config.json would sample.
        "asr": dict(where="examples.py 2-8", kwargs=dict(max_new_tokens=256, do_sample=False), task=("asr", "text", None),
                    messages=[{"role": "system", "content": "请记录下你所听到的语音内容。"},
                              {"role": "human", "content": [audio(GREAT_WALL)]}, ANSWER]),
        "s2tt": dict(where="examples.py 12-19", kwargs=dict(max_new_tokens=256, temperature=0.1, do_sample=True),
                     task=("translate", "text", "zh"),
                     messages=[{"role": "system", "content": "请仔细聆听这段语音，然后将其内容翻译成中文。"},
                               {"role": "human", "content": [audio(GREAT_WALL)]}, ANSWER]),
        "audio_caption": dict(where="examples.py 24-30", kwargs=dict(max_new_tokens=256, temperature=0.1, do_sample=True),
                              task=("caption", "text", None),
                              messages=[{"role": "system", "content": "Please briefly explain the important events "
                                                                      "involved in this audio clip."},
                                        {"role": "human", "content": [audio(MUSIC)]}, ANSWER]),
        # `max_tokens` is not a transformers argument: max_new_tokens stays 2048 (line 46)
        "s2st": dict(where="examples.py 34-41", kwargs=dict(max_tokens=2048, temperature=0.7, do_sample=True),
                     task=("translate", "speech", "zh"),
                     messages=[{"role": "system", "content": "请仔细聆听这段语音，然后将其内容翻译成中文并用语音播报。"},
                               {"role": "human", "content": [audio(GREAT_WALL)]}, SPEAK]),
        "multi_turn_aqta": dict(where="examples.py 50-68 (round 2)", task=None,
                                kwargs=dict(max_new_tokens=256, temperature=0.5, do_sample=True),
                                messages=[{"role": "system", "content": SYSTEM},
                                          {"role": "human", "content": [audio(ROUND1)]},
                                          {"role": "assistant", "content": "听说了，从下个月开始。"},
                                          {"role": "human", "content": [audio(ROUND2)]}, ANSWER]),
        "multi_turn_aqaa": dict(where="examples.py 71-99 (round 2)", task=None,
                                kwargs=dict(max_new_tokens=2048, temperature=0.7, do_sample=True),
                                messages=[{"role": "system", "content": SYSTEM},
                                          {"role": "human", "content": [audio(ROUND1)]},
                                          {"role": "assistant", "content": [{"type": "text", "text": "<tts_start>"},
                                                                            {"type": "token", "token": reply1}]},
                                          {"role": "human", "content": [audio(ROUND2)]}, SPEAK]),
        "tool_call": dict(where="examples.py 102-109", kwargs=dict(max_new_tokens=4096, **chat), task=("chat", "speech", None),
                          messages=[{"role": "system", "content": TOOL_SYSTEM},
                                    {"role": "tool_json_schemas", "content": TOOLS_JSON},
                                    {"role": "human", "content": [audio(STOCKS)]}, SPEAK]),
        "tool_result": dict(where="examples.py 115-125", kwargs=dict(max_new_tokens=4096, **chat), task=("chat", "speech", None),
                            messages=[{"role": "system", "content": TOOL_SYSTEM},
                                      {"role": "tool_json_schemas", "content": TOOLS_JSON},
                                      {"role": "human", "content": [audio(STOCKS)]},
                                      {"role": "assistant", "content": [{"type": "text", "text": "<tts_start>"},
                                                                        {"type": "token", "token": call}]},
                                      {"role": "input", "content": [{"type": "text", "text": SEARCH_RESULT},
                                                                    {"type": "text", "text": SUMMARY}]},
                                      SPEAK]),
        "paralinguistic_speech_chat": dict(where="examples.py 133-139", task=None,
                                           kwargs=dict(max_tokens=2048, temperature=0.7, do_sample=True),
                                           messages=[{"role": "system", "content": "请用语音与我交流。"},
                                                     {"role": "human", "content": [audio(ROUND1)]}, SPEAK]),
        # beam search (num_beams=2) is not offered by stepvoice: the prompt is checked, not the options
        "mmau": dict(where="examples.py 148-155", task=None, kwargs=None,
                     messages=[{"role": "system", "content": "You are an expert in audio analysis, please analyze the "
                                                             "audio content and answer the questions accurately."},
                               {"role": "human", "content": [audio(MUSIC), {"type": "text", "text": "Which best describes "
                                                                            "the male vocal? Output the final answer in "
                                                                            "<RESPONSE> </RESPONSE>."}]}, ANSWER]),
        "uac_paralinguistic": dict(where="examples.py 159-165", task=("paralinguistic", "text", None),
                                   kwargs=dict(max_new_tokens=1024, temperature=0.5, top_p=0.9, do_sample=True),
                                   messages=[{"role": "system", "content": preset("paralinguistic").system_prompt},
                                             {"role": "human", "content": [audio(MUSIC)]}, ANSWER]),
        "think": dict(where="examples-think.py 1-13", task=("think", "think", None),
                      kwargs=dict(max_new_tokens=2048, temperature=0.7, do_sample=True),
                      messages=[{"role": "system", "content": preset("think").system_prompt},
                                {"role": "human", "content": [audio(ROUND1)]},
                                {"role": "assistant", "content": "\n<think>\n", "eot": False}]),
    }


# ---- the same conversations, as stepvoice builds them --------------------------------------


def stepvoice_messages(tok, messages: list[dict]) -> tuple[list[Message], str]:
    """Our messages and reply mode for an official list, each turn made by the product's own path."""
    out: list[Message] = []
    for msg in messages[:-1]:
        role, content = msg["role"], msg["content"]
        if role == "tool_json_schemas":
            out.append(tool_schemas_message(json.loads(content)))  # the session's declaration turn
        elif role == "input":
            result, instruction = (item["text"] for item in content)
            runner = ToolRunner(None, None, ToolLoopConfig(summary_instruction=instruction))
            out.append(runner.input_turn([ToolResult("call-1", "search", result)], last=True))
        elif role == "assistant" and isinstance(content, list):  # an earlier spoken reply
            ids = tuple(content[1]["token"]) + (tok.eot_id,)  # as generated: the EOT is still there
            record = ReplyRecord()
            record.add(TurnEnd("stop", token_ids=ids))
            record.speech_pieces.append((0, "…"))
            out.append(record.message(tok, reply="speech"))
        elif role == "assistant":  # an earlier text reply, stored with the ids the model generated
            record = ReplyRecord(text=content)
            record.add(TurnEnd("stop", token_ids=tuple(tok.encode(content)) + (tok.eot_id,)))
            out.append(record.message(tok, reply="text"))
        elif isinstance(content, str):
            out.append(Message.text(role, content))
        else:
            out.append(Message(role, [Text(i["text"]) if i["type"] == "text" else Audio(i["audio"]) for i in content]))
    last = messages[-1]
    reply = {None: "text", "<tts_start>": "speech", "\n<think>\n": "think"}[last["content"]]
    return out, reply


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(folder)
    return load_tokenizer(folder)


NAMES = [
    "text_chat", "text_to_speech", "speech_to_text", "speech_to_speech", "multi_turn_spoken_history", "multi_modal",
    "asr", "s2tt", "audio_caption", "s2st", "multi_turn_aqta", "multi_turn_aqaa", "tool_call", "tool_result",
    "paralinguistic_speech_chat", "mmau", "uac_paralinguistic", "think"]


def test_every_example_is_replayed(tok):
    assert sorted(examples(tok)) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_prompt_ids_equal_the_official_template(tok, name):
    ex = examples(tok)[name]
    ours, reply = stepvoice_messages(tok, ex["messages"])
    assert build_prompt(ours, tok, GenerationOptions(reply=reply)).ids == official_ids(tok, ex["messages"]), ex["where"]


def test_presets_carry_the_official_system_prompts(tok):
    ex = examples(tok)
    for name in ("asr", "s2tt", "audio_caption", "s2st", "uac_paralinguistic", "think"):
        task, reply, lang = ex[name]["task"]
        assert preset(task, reply=reply, target_lang=lang).system_prompt == ex[name]["messages"][0]["content"], name
    # the tool-calling chat prompt (examples.py line 104), for the example's date
    chat = preset("chat", reply="speech", today=dt.date(2025, 8, 28))
    assert chat.system_prompt == TOOL_SYSTEM and chat.use_tools


def test_tool_result_is_two_pieces(tok):
    """examples.py lines 121-122: result and instruction are separate items, so separately tokenized."""
    runner = ToolRunner(None, None, ToolLoopConfig())
    turn = runner.input_turn([ToolResult("c", "search", SEARCH_RESULT)], last=True)
    assert [p.text for p in turn.content] == [SEARCH_RESULT, SUMMARY]
    ids = build_prompt([turn], tok, GenerationOptions()).ids
    assert ids[:-len(tok.encode("<|BOT|>assistant\n"))] == (
        tok.encode("<|BOT|>input\n") + tok.encode(SEARCH_RESULT) + tok.encode(SUMMARY) + [tok.eot_id])
    # where joining would tokenize differently (a result ending in a newline), the pieces stay apart
    ragged = build_prompt([runner.input_turn([ToolResult("c", "search", "done\n")], last=True)], tok,
                          GenerationOptions()).ids
    apart = tok.encode("done\n") + tok.encode(SUMMARY)
    assert apart != tok.encode("done\n" + SUMMARY) and ragged[len(tok.encode("<|BOT|>input\n")):][:len(apart)] == apart
    # a round that is not the last has no instruction: one piece
    assert [p.text for p in runner.input_turn([ToolResult("c", "search", "x")], last=False).content] == ["x"]


def test_tool_schemas_turn_is_the_official_string():
    """examples.py line 105 (and the fork's tokenizer line 195): json.dumps(tools, ensure_ascii=False)."""
    assert tool_schemas_message(json.loads(TOOLS_JSON)).plain_text == TOOLS_JSON


def test_think_second_phase_prompt(tok):
    """examples-think.py line 16: the same turn continues with thought + '>\\n\\n<tts_start>' (the thought
    ends in '</think' on the real layout: its last id '>' was dropped, stepaudio2.py line 54)."""
    ex = examples(tok)["think"]
    ours, _ = stepvoice_messages(tok, ex["messages"])
    thought = "用户问门票的事，语气好奇。"
    second = [*ex["messages"][:-1], {"role": "assistant", "content": "\n<think>\n" + thought + "</think" + ">\n\n<tts_start>",
                                     "eot": False}]
    assert think_continuation(ours, tok, thought, GenerationOptions(reply="think")).ids == official_ids(tok, second)


@pytest.fixture(scope="module")
def fake_model(fake_checkpoint):
    return LocalBackend.from_spec(fake_checkpoint, device="cpu", dtype="float32").model


GENERATION_CONFIG = {"do_sample": True, "temperature": 0.6, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.1}


@pytest.mark.parametrize("with_generation_config", [False, True], ids=["no-generation-config", "generation-config"])
@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("multi_turn_aqta", "multi_turn_aqaa",
                                                                 "paralinguistic_speech_chat", "mmau")])
def test_run_stops_on_eot_with_the_official_options(tok, fake_model, tmp_path, name, with_generation_config):
    """One scripted generation per example through the local backend: it reads the official prompt,
    stops on <|EOT|> without keeping it (stepaudio2.py lines 90-92 make <|EOT|> the eos; line 54 drops
    the last id), and samples with what transformers makes of the example's arguments."""
    ex = examples(tok)[name]
    task, reply, lang = ex["task"]
    if with_generation_config:
        (tmp_path / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    builder = RequestBuilder(AssistantConfig(), lambda: History(), lambda: [], task=task, target_lang=lang)
    options = builder.options(builder.preset(reply), reply)
    ours, _ = stepvoice_messages(tok, ex["messages"])
    body = spoken_ids(tok, "好的", [1, 2, 3, 4, 5]) if reply == "speech" else tok.encode("好的。")
    if reply == "think":
        body = tok.encode("想一想") + tok.encode("</think>") + spoken_ids(tok, "好", [1, 2, 3, 4])
    fake = ScriptedLogits(fake_model, body + [tok.eot_id, tok.eot_id])
    backend = LocalBackend(fake, tok)
    backend.sampling_defaults = read_generation_config(tmp_path)
    end = asyncio.run(_last(backend.generate(ours, options)))
    assert fake.calls[0] == official_ids(tok, ex["messages"]), ex["where"]
    assert end.reason == "stop" and tok.eot_id not in end.token_ids
    assert len(fake.calls) == len(body) + 1  # nothing generated after the first <|EOT|>
    if reply != "think":
        assert list(end.token_ids) == body
    expected = official_effective(ex["kwargs"], GENERATION_CONFIG if with_generation_config else None)
    ran = backend.last_options.report()
    assert {k: ran[k] for k in expected} == pytest.approx(expected), ex["where"]


async def _last(stream):
    last = None
    async for event in stream:
        last = event
    return last


def test_unset_options_are_transformers_defaults():
    """Nothing set: greedy (do_sample False), top_k 50, top_p 1.0, penalty 1.0 (transformers' defaults)."""
    assert GenerationOptions().resolved().report() == {
        "temperature": 0.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0, "max_new_tokens": 2048, "seed": None}
    assert official_effective({}, None) == {"temperature": 0.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0}
    only_t = official_effective({"temperature": 0.3, "do_sample": True}, None)
    assert GenerationOptions(temperature=0.3).resolved().report() == {**only_t, "max_new_tokens": 2048, "seed": None}
