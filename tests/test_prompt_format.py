"""build_prompt: ids for each message shape equal sequences hand-built here from
tokenizer pieces and special ids; audio pieces, mels and positions line up."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stepvoice.engine.audio import load_audio, log_mel
from stepvoice.engine.errors import AudioError, StepvoiceError
from stepvoice.engine.messages import Audio, Message, Speech, Text
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.prompt import (
    PromptError, build_prompt, speech_history_ids, ta4_interleave, think_continuation, tool_schemas_message,
)
from stepvoice.engine.tokenizer import load_tokenizer, write_fake_tokenizer

TEXT = GenerationOptions(reply="text")
SPEECH = GenerationOptions(reply="speech")
THINK = GenerationOptions(reply="think")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_fake_tokenizer(d)
    return load_tokenizer(d)


def turn(tok, role: str, text: str) -> list[int]:
    return [tok.bot_id] + tok.encode(f"{role}\n{text}") + [tok.eot_id]


def opening(tok) -> list[int]:
    return [tok.bot_id] + tok.encode("assistant\n")


def test_text_chat(tok):
    msgs = [Message.text("system", "You are a helpful assistant."),
            Message.text("human", "Give me a brief introduction to the Great Wall.")]
    p = build_prompt(msgs, tok, TEXT)
    expected = (turn(tok, "system", "You are a helpful assistant.")
                + turn(tok, "human", "Give me a brief introduction to the Great Wall.") + opening(tok))
    assert p.ids == expected
    assert p.mels == [] and p.audio_starts == [] and p.audio_seconds == 0


def test_spoken_reply_opens_with_tts_start(tok):
    msgs = [Message.text("system", "请用语音与我交流。"), Message.text("human", "你好")]
    p = build_prompt(msgs, tok, SPEECH)
    assert p.ids == turn(tok, "system", "请用语音与我交流。") + turn(tok, "human", "你好") + opening(tok) + [tok.tts_start_id]
    assert tok.eot_id != p.ids[-1]


def test_audio_input_pieces(tok, espeak_wav):
    speech = load_audio(espeak_wav("What is the weather like in Paris today?"))
    long = np.concatenate([speech, np.zeros(400000 - len(speech) + 16000, dtype=np.float32)])  # 26 s
    msgs = [Message.text("system", "You are a helpful assistant."),
            Message("human", [Text("Translate the speech into Chinese."), Audio(long)])]
    p = build_prompt(msgs, tok, TEXT)
    head = turn(tok, "system", "You are a helpful assistant.") + [tok.bot_id] + tok.encode("human\n")
    head += tok.encode("Translate the speech into Chinese.")
    block1 = [tok.audio_start_id] + [tok.audio_patch_id] * 313 + [tok.audio_end_id]
    block2 = [tok.audio_start_id] + [tok.audio_patch_id] * 13 + [tok.audio_end_id]
    assert p.ids == head + block1 + block2 + [tok.eot_id] + opening(tok)
    assert p.audio_starts == [len(head), len(head) + len(block1)]
    assert [m.shape for m in p.mels] == [torch.Size([128, 2502]), torch.Size([128, 102])]
    assert torch.equal(p.mels[0], log_mel(long[:400000])) and torch.equal(p.mels[1], log_mel(long[400000:]))
    assert p.audio_seconds == pytest.approx(26.0)
    for start in p.audio_starts:
        assert p.ids[start] == tok.audio_start_id and p.ids[start + 1] == tok.audio_patch_id


def test_audio_only_turn(tok):
    audio = np.full(16000, 0.01, dtype=np.float32)
    p = build_prompt([Message("human", [Audio(audio)])], tok, SPEECH)
    assert p.ids == ([tok.bot_id] + tok.encode("human\n") + [tok.audio_start_id] + [tok.audio_patch_id] * 13
                     + [tok.audio_end_id, tok.eot_id] + opening(tok) + [tok.tts_start_id])
    assert p.audio_starts == [len(tok.encode("human\n")) + 1]


def test_tools_and_tool_result(tok):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "天气",
                                               "parameters": {"type": "object", "properties": {
                                                   "location": {"type": "string"}}}}}]
    call = '<tool_call>function\nget_weather\n{"location": "Paris"}</tool_call>'
    msgs = [Message.text("system", "You are a helpful assistant."), tool_schemas_message(tools),
            Message.text("human", "Weather in Paris?"),
            # the model's own reply goes back as the ids it generated (history never re-encodes decoded text)
            Message("assistant", [Text(call, tuple(tok.encode(call)))]),
            Message.text("input", '{"temp": 21}')]
    p = build_prompt(msgs, tok, TEXT)
    schema_text = json.dumps(tools, ensure_ascii=False)
    assert "天气" in schema_text
    expected = (turn(tok, "system", "You are a helpful assistant.") + turn(tok, "tool_json_schemas", schema_text)
                + turn(tok, "human", "Weather in Paris?") + [tok.bot_id] + tok.encode("assistant\n")
                + [tok.id_of("<tool_call>")] + tok.encode('function\nget_weather\n{"location": "Paris"}')
                + [tok.id_of("</tool_call>"), tok.eot_id] + turn(tok, "input", '{"temp": 21}') + opening(tok))
    assert p.ids == expected


def test_multi_turn_spoken_history_raw_ids(tok):
    # raw output ids after <tts_start>, as the local engine returns them (ending with EOT)
    raw = [tok.encode("Hi")[0], *tok.ids_of_codes([5, 6, 7, 8]), tok.tts_pad_id, *tok.ids_of_codes([9]),
           tok.audio_pad_id, tok.audio_pad_id, tok.audio_pad_id, tok.tts_end_id, tok.eot_id]
    msgs = [Message.text("human", "hello"), Message("assistant", [Speech("Hi", (5, 6, 7, 8, 9), tuple(raw))]),
            Message.text("human", "Now write a 4-line poem about it.")]
    p = build_prompt(msgs, tok, SPEECH)
    expected = (turn(tok, "human", "hello") + [tok.bot_id] + tok.encode("assistant\n") + [tok.tts_start_id]
                + raw[:-1] + [tok.eot_id] + turn(tok, "human", "Now write a 4-line poem about it.")
                + opening(tok) + [tok.tts_start_id])
    assert p.ids == expected  # the generated EOT is not doubled


def test_spoken_history_reinterleaved_ta4(tok):
    text_ids = tok.encode("Hello there, friend")
    codes = tuple(range(100, 100 + 4 * len(text_ids) + 3))  # speech outlasts text by one group
    speech = Speech("Hello there, friend", codes, None, tail_text='<tool_call>function\nget_date_time\n{}</tool_call>')
    ids = speech_history_ids(speech, tok)
    groups = len(text_ids) + 1
    body = []
    padded_text = text_ids + [tok.tts_pad_id]
    # the fork pads speech only up to the group count (build_tts_interleave_data): here none, the last group is short
    padded_audio = tok.ids_of_codes(codes)
    for g in range(groups):
        body += [padded_text[g]] + padded_audio[4 * g:4 * g + 4]
    assert ids == body + [tok.tts_end_id] + tok.encode(speech.tail_text)
    # the decoded stream gives back the text and the codes
    assert tok.decode_text(ids[:-len(tok.encode(speech.tail_text))]) == "Hello there, friend"
    assert [tok.code_of(i) for i in ids if tok.code_of(i) is not None] == list(codes)


def test_ta4_text_longer_than_speech(tok):
    """The fork's padding (step_audio_2_tokenizer.py build_tts_interleave_data, branch
    step-audio2-mini): speech padded with <audio_6561> up to the group count only."""
    t = tok.encode("a b c d e f g")[:5]
    assert len(t) == 5
    c, pad = tok.ids_of_codes([1, 2]), tok.audio_pad_id
    # 5 groups; speech padded to 5 ids: the first group has 4, the second 1, the rest none
    assert ta4_interleave(t, c, tok) == [t[0], *c, pad, pad, t[1], pad, t[2], t[3], t[4]]


def test_think_opening_and_continuation(tok):
    msgs = [Message.text("human", "Why is the sky blue?")]
    p = build_prompt(msgs, tok, THINK)
    assert p.ids == turn(tok, "human", "Why is the sky blue?") + [tok.bot_id] + tok.encode("assistant\n\n<think>\n")
    assert tok.decode(p.ids).endswith("<|BOT|>assistant\n\n<think>\n")
    thought = "Rayleigh scattering.\n"
    q = think_continuation(msgs, tok, thought, THINK)
    assert q.ids == (turn(tok, "human", "Why is the sky blue?") + [tok.bot_id]
                     + tok.encode("assistant\n\n<think>\nRayleigh scattering.\n</think>\n\n") + [tok.tts_start_id])
    assert q.ids[:len(p.ids)] == p.ids  # the continuation extends the first prompt


def test_empty_message_and_text_parts_tokenized_separately(tok):
    p = build_prompt([Message("system", []), Message("human", [Text("Hello"), Text(" world")])], tok, TEXT)
    assert p.ids == ([tok.bot_id] + tok.encode("system\n") + [tok.eot_id] + [tok.bot_id] + tok.encode("human\n")
                     + tok.encode("Hello") + tok.encode(" world") + [tok.eot_id] + opening(tok))


def test_bad_inputs_raise_one_line_errors(tok):
    with pytest.raises(PromptError, match="assistant"):
        build_prompt([Message("human", [Speech("x", (1,))])], tok, TEXT)
    with pytest.raises(AudioError, match="too short"):
        build_prompt([Message("human", [Audio(np.zeros(100, dtype=np.float32))])], tok, TEXT)
    with pytest.raises(AudioError, match="NaN"):
        build_prompt([Message("human", [Audio(np.full(16000, np.nan, dtype=np.float32))])], tok, TEXT)
    with pytest.raises(PromptError, match="Message"):
        build_prompt([{"role": "human", "content": "hi"}], tok, TEXT)
    with pytest.raises(PromptError, match="part"):
        build_prompt([Message("human", ["just a string"])], tok, TEXT)
    for cls in (PromptError, AudioError):
        assert issubclass(cls, StepvoiceError)
