"""Messages -> token ids + audio features, in the official Step-Audio 2 chat format.

A turn is `<|BOT|>{role}\\n{content}<|EOT|>`, with no separator between turns.
Like the official code, the prompt is a list of pieces that are tokenized
SEPARATELY and concatenated: a message whose content is one text becomes one
string `"<|BOT|>{role}\\n{text}<|EOT|>"`; a message with several parts (audio,
text, spoken history) becomes `"<|BOT|>{role}\\n"`, one piece per part, and
`"<|EOT|>"`. Tokenization at piece borders can differ from tokenizing the joined
string, so this split is part of the format.

Audio parts: each 25 s piece is `<audio_start>` N x `<audio_patch>` `<audio_end>`
with its own log-mel; the model writes the adapter outputs over the patches.
Spoken history goes back as `<tts_start>` + the raw output ids + `<|EOT|>`, or,
when the ids are unknown, re-interleaved TA4 as the vLLM fork rebuilds it (1 text
token + up to 4 speech tokens, text padded with `<tts_pad>`, speech with
`<audio_6561>` up to the group count; see `ta4_interleave`) then `<tts_end>`.
The reply opens with `<|BOT|>assistant\\n`, plus `<tts_start>` for a spoken
reply, or `\\n<think>\\n` for a Think model (`think_continuation` then adds the
thought, `</think>\\n\\n<tts_start>`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import numpy as np
import torch

from stepvoice.engine.audio import SAMPLE_RATE, check_samples, log_mel, placeholder_count, split_pieces
from stepvoice.engine.errors import AudioError, StepvoiceError
from stepvoice.engine.messages import Audio, Message, Speech, Text
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.tokenizer import (
    BOT, EOT, THINK_END, THINK_START, TTS_START, StepTokenizer,
)
from stepvoice.engine.untrusted import encode_untrusted
from stepvoice.engine.mel_cache import piece_mels

TA4_SPEECH_PER_TEXT = 4  # speech tokens per text token in a spoken reply
THINK_OPEN = f"\n{THINK_START}\n"  # what a Think model's reply starts with
THINK_TO_SPEECH = f"{THINK_END}\n\n{TTS_START}"  # appended after the thought to make it speak
MIN_AUDIO_MS = 20
TOOL_CALL_MARKUP = ("<tool_call>", "</tool_call>")  # kept as tokens in the model's own replies when ids are unknown

Piece = Union[str, list]  # a string to tokenize, or ids taken as they are


class PromptError(StepvoiceError):
    """A message that cannot be put in a prompt (wrong part for its role, unknown part)."""


@dataclass
class Prompt:
    """What the model reads: `ids`, one mel [128, T] per audio piece, and the index in
    `ids` of each piece's `<audio_start>` (its `<audio_patch>` slots follow it)."""

    ids: list[int]
    mels: list[torch.Tensor] = field(default_factory=list)
    audio_starts: list[int] = field(default_factory=list)
    audio_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.ids)


def ta4_interleave(text_ids: Sequence[int], audio_ids: Sequence[int], tokenizer: StepTokenizer) -> list[int]:
    """The TA4 body of a spoken reply (without `<tts_start>`/`<tts_end>`): groups of
    1 text id + up to 4 speech ids, as StepFun's vLLM fork rebuilds one from tts_text and
    tts_audio (step_audio_2_tokenizer.py `build_tts_interleave_data`, branch step-audio2-mini):
    text is padded with `<tts_pad>` up to the group count; speech is padded with
    `<audio_6561>` only up to the GROUP count (not to 4 per group), so the last group can be
    short and, when the text is longer, the groups after the speech carry text only."""
    groups = max(math.ceil(len(audio_ids) / TA4_SPEECH_PER_TEXT), len(text_ids))
    text = list(text_ids) + [tokenizer.tts_pad_id] * (groups - len(text_ids))
    audio = list(audio_ids) + [tokenizer.audio_pad_id] * max(0, groups - len(audio_ids))
    out: list[int] = []
    for g in range(groups):
        out.append(text[g])
        out.extend(audio[g * TA4_SPEECH_PER_TEXT:(g + 1) * TA4_SPEECH_PER_TEXT])
    return out


def speech_history_ids(speech: Speech, tokenizer: StepTokenizer) -> list[int]:
    """Ids after `<tts_start>` for an earlier spoken reply: the raw output ids when known
    (a trailing `<|EOT|>` is left to the turn), else text and codes re-interleaved as TA4."""
    if speech.token_ids is not None:
        ids = [int(i) for i in speech.token_ids]
        if ids and ids[0] == tokenizer.tts_start_id:
            ids = ids[1:]
        while ids and ids[-1] == tokenizer.eot_id:
            ids = ids[:-1]
        return ids
    # ids unknown: the text is re-encoded as untrusted (decoded text never yields special ids)
    body = ta4_interleave(encode_untrusted(tokenizer, speech.text), tokenizer.ids_of_codes(speech.codes), tokenizer)
    # the tail holds the model's own tool calls: their <tool_call> markup stays the real tokens
    tail = encode_untrusted(tokenizer, speech.tail_text, allow=TOOL_CALL_MARKUP) if speech.tail_text else []
    return body + [tokenizer.tts_end_id] + tail


class _Builder:
    """Pieces, mels and audio positions of one prompt while it is being built."""

    def __init__(self, tokenizer: StepTokenizer) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []
        self.mels: list[torch.Tensor] = []
        self.audio_starts: list[int] = []
        self.audio_seconds = 0.0

    def add(self, piece: Piece) -> None:
        self.ids.extend(self.tok.encode(piece) if isinstance(piece, str) else piece)

    def add_audio(self, audio: Audio) -> None:
        samples = check_samples(np.asarray(audio.samples), "audio part")
        pieces = split_pieces(samples)
        if not pieces:
            raise AudioError(
                f"audio part is too short ({1000 * len(samples) / SAMPLE_RATE:.0f} ms); at least {MIN_AUDIO_MS} ms needed"
            )
        self.audio_seconds += len(samples) / SAMPLE_RATE
        for mel in piece_mels(audio.samples, pieces, log_mel):  # once per audio array (engine.mel_cache)
            n = placeholder_count(mel.shape[1])
            self.audio_starts.append(len(self.ids))
            self.mels.append(mel)
            # same ids as tokenizing "<audio_start>" + "<audio_patch>" * n + "<audio_end>"
            self.add([self.tok.audio_start_id] + [self.tok.audio_patch_id] * n + [self.tok.audio_end_id])

    def add_untrusted(self, text: str, role: str = "") -> None:
        """Message content: special-token strings in it stay ordinary text (engine.untrusted). An
        assistant turn whose ids are unknown (remote or scripted engine) keeps only its tool-call markup."""
        self.ids.extend(encode_untrusted(self.tok, text, allow=TOOL_CALL_MARKUP if role == "assistant" else ()))

    def add_text(self, part: Text, role: str = "") -> None:
        if part.token_ids is not None:  # the model's own ids: repeated verbatim
            self.add([int(i) for i in part.token_ids])
        else:
            self.add_untrusted(part.text, role)

    def add_message(self, message: Message) -> None:
        role, parts = message.role, list(message.content)
        header = f"{BOT}{role}\n"
        if not parts or (len(parts) == 1 and isinstance(parts[0], Text)):
            # One string "<|BOT|>{role}\n{text}<|EOT|>" in the official code; the special tokens
            # split it anyway, so "{role}\n{text}" encoded as one untrusted piece gives the same ids.
            self.add(BOT)
            if parts and parts[0].token_ids is not None:
                self.add(f"{role}\n")
                self.add_text(parts[0], role)
            else:
                self.add_untrusted(f"{role}\n" + (parts[0].text if parts else ""), role)
            self.add(EOT)
            return
        self.add(header)
        for part in parts:
            if isinstance(part, Text):
                self.add_text(part, role)
            elif isinstance(part, Audio):
                self.add_audio(part)
            elif isinstance(part, Speech):
                if role != "assistant":
                    raise PromptError(f"a spoken reply (Speech) can only be in an assistant message, not {role!r}")
                self.add(TTS_START)
                self.add(speech_history_ids(part, self.tok))
            else:
                raise PromptError(f"unsupported message part {type(part).__name__} in a {role!r} message")
        self.add(EOT)

    def prompt(self) -> Prompt:
        return Prompt(self.ids, self.mels, self.audio_starts, self.audio_seconds)


def reply_opening(reply: str, thought: str | None = None) -> str:
    """The text that opens the assistant's reply for a reply mode."""
    head = f"{BOT}assistant\n"
    if thought is not None:
        return head + THINK_OPEN + thought + THINK_TO_SPEECH
    if reply == "speech":
        return head + TTS_START
    if reply == "think":
        return head + THINK_OPEN
    if reply == "text":
        return head
    raise PromptError(f"unknown reply mode {reply!r}; expected text, speech or think")


def build_prompt(
    messages: Sequence[Message],
    tokenizer: StepTokenizer,
    options: GenerationOptions | None = None,
    *,
    thought: str | None = None,
) -> Prompt:
    """Token ids and audio features for `messages`, opened for the reply `options.reply`.

    `thought`: a Think model's finished reasoning; the prompt then continues it with
    `</think>\\n\\n<tts_start>` so the model speaks (see `think_continuation`)."""
    reply = (options or GenerationOptions()).reply
    builder = _Builder(tokenizer)
    for message in messages:
        if not isinstance(message, Message):
            raise PromptError(f"expected a Message, got {type(message).__name__}")
        builder.add_message(message)
    builder.add(reply_opening(reply, thought))
    return builder.prompt()


def think_continuation(
    messages: Sequence[Message], tokenizer: StepTokenizer, thought: str, options: GenerationOptions | None = None
) -> Prompt:
    """The second step of a Think model: the same prompt with the reasoning written out
    and closed, ending in `<tts_start>` so the reply that follows is spoken."""
    return build_prompt(messages, tokenizer, options, thought=thought)


def tool_schemas_message(tools: Sequence[dict[str, Any]]) -> Message:
    """The `tool_json_schemas` turn declaring `tools` (OpenAI function form)."""
    return Message("tool_json_schemas", [Text(json.dumps(list(tools), ensure_ascii=False))])


__all__ = [
    "Prompt", "PromptError", "build_prompt", "think_continuation", "reply_opening", "ta4_interleave",
    "speech_history_ids", "tool_schemas_message", "THINK_OPEN", "THINK_TO_SPEECH",
]
