"""Conversation history: replies stored the way the model expects them back, and barge-in truncation.

A spoken reply goes back as `Speech` (its text half, its codes, and, from the
local engine, the raw generated ids so the prompt repeats them verbatim). A
text reply goes back as `Text`; tool calls stay in the assistant turn as the
`<tool_call>` text the model wrote. Think text is never kept (the official
examples drop it from history).

`truncate_last_reply(played_s)` is OpenAI Realtime's truncate: after a
barge-in only what the user heard stays (codes at 25 per second, and the text
tokens spoken up to there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.events import Event, SpeechCodes, TextDelta, ToolCall, TurnEnd
from engine.messages import Message, Speech, Text

CODES_PER_SECOND = 25  # CosyVoice2 speech codes


class TokenizerLike(Protocol):
    eot_id: int
    tts_end_id: int
    audio_pad_id: int

    def code_of(self, token_id: int) -> int | None: ...
    def decode(self, ids: list[int]) -> str: ...


@dataclass
class ReplyRecord:
    """Everything one generation produced, in order; becomes one assistant message."""

    text: str = ""  # text channel (a text reply, or non-spoken text after <tts_end>)
    speech_pieces: list[tuple[int, str]] = field(default_factory=list)  # (codes before the piece, text piece)
    codes: list[int] = field(default_factory=list)
    think: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    token_ids: tuple[int, ...] | None = None
    end: TurnEnd | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            if event.channel == "speech":
                self.speech_pieces.append((len(self.codes), event.text))
            elif event.channel == "think":
                self.think += event.text
            else:
                self.text += event.text
        elif isinstance(event, SpeechCodes):
            self.codes.extend(event.codes)
        elif isinstance(event, ToolCall):
            self.calls.append(event)
        elif isinstance(event, TurnEnd):
            self.end = event
            self.token_ids = tuple(event.token_ids) or None

    @property
    def speech_text(self) -> str:
        return "".join(p for _, p in self.speech_pieces)

    @property
    def spoken(self) -> bool:
        return bool(self.codes or self.speech_pieces)

    @property
    def tail(self) -> str:
        """The non-spoken part: text-channel text plus each call as the model wrote it."""
        return self.text + "".join(c.raw or _call_text(c) for c in self.calls)

    def message(self, tokenizer: TokenizerLike | None = None, reply: str = "text") -> Message | None:
        """The assistant turn for history, or None when nothing was produced."""
        if self.spoken:
            ids = self.token_ids if reply == "speech" else None  # think ids also hold the thought: re-interleave
            if ids and tokenizer is not None and ids[-1] == tokenizer.eot_id:
                ids = ids[:-1]  # the prompt builder adds <|EOT|> itself
            return Message("assistant", [Speech(self.speech_text, tuple(self.codes), ids, self.tail)])
        if self.tail:
            return Message("assistant", [Text(self.tail)])
        return None


def _call_text(call: ToolCall) -> str:
    import json

    return f"<tool_call>function\n{call.name}\n{json.dumps(call.arguments, ensure_ascii=False)}</tool_call>"


class History:
    """The messages of one conversation (system prompt and tool schemas are added per request)."""

    def __init__(self, messages: list[Message] | None = None):
        self.messages: list[Message] = list(messages or [])
        self._last_reply: ReplyRecord | None = None
        self._last_reply_message: Message | None = None

    def append(self, message: Message) -> None:
        self.messages.append(message)

    def add_reply(self, record: ReplyRecord, tokenizer: TokenizerLike | None = None, reply: str = "text") -> Message | None:
        msg = record.message(tokenizer, reply)
        if msg is not None:
            self.messages.append(msg)
            self._last_reply, self._last_reply_message = record, msg
        return msg

    def last_spoken_reply(self) -> tuple[int, Message] | None:
        for i in range(len(self.messages) - 1, -1, -1):
            m = self.messages[i]
            if m.role == "human":
                return None  # only the reply to the latest user turn can be interrupted
            if m.role == "assistant" and any(isinstance(p, Speech) for p in m.content):
                return i, m
        return None

    def truncate_last_reply(self, played_s: float, tokenizer: TokenizerLike | None = None) -> Message | None:
        """Keep only the part of the latest spoken reply the user heard; returns the new message
        (None if nothing was heard and the turn was removed, or there is no spoken reply)."""
        found = self.last_spoken_reply()
        if found is None:
            return None
        index, msg = found
        speech = next(p for p in msg.content if isinstance(p, Speech))
        heard = max(0, math.ceil(max(0.0, played_s) * CODES_PER_SECOND - 1e-9))
        if heard >= len(speech.codes):
            return msg  # everything was heard
        is_last = index == len(self.messages) - 1
        tail = "" if is_last else speech.tail_text  # a call that was already answered stays
        if speech.token_ids and tokenizer is not None:
            ids, text = _truncate_ids(speech.token_ids, heard, tokenizer)
        else:
            ids = None
            text = self._heard_text(msg, speech, heard)
        codes = speech.codes[:heard]
        if not codes and not text and not tail:
            del self.messages[index]
            return None
        new = Message("assistant", [Speech(text, codes, ids, tail)])
        self.messages[index] = new
        if self._last_reply_message is msg:
            self._last_reply_message = new
        return new

    def _heard_text(self, msg: Message, speech: Speech, heard: int) -> str:
        if self._last_reply is not None and self._last_reply_message is msg:
            return "".join(p for before, p in self._last_reply.speech_pieces if before < heard)
        # No alignment known (e.g. history given by the caller): cut the text in proportion, at a space.
        n = int(len(speech.text) * heard / max(1, len(speech.codes)))
        cut = speech.text[:n]
        if n < len(speech.text) and " " in cut:
            cut = cut[: cut.rfind(" ") + 1]
        return cut


def _truncate_ids(token_ids: tuple[int, ...], heard: int, tok: TokenizerLike) -> tuple[tuple[int, ...], str]:
    """Keep generated ids up to the `heard`-th speech code (TA4: each text token precedes its codes)."""
    kept: list[int] = []
    text_ids: list[int] = []
    n = 0
    for tid in token_ids:
        code = tok.code_of(tid)
        if code is not None and tid != tok.audio_pad_id:
            if n >= heard:
                break
            n += 1
        elif code is None and tid not in _special_ids(tok):
            text_ids.append(tid)
        if tid == tok.tts_end_id:
            break
        kept.append(tid)
    kept.append(tok.tts_end_id)
    return tuple(kept), tok.decode(text_ids)


def _special_ids(tok: Any) -> set[int]:
    names = ("bot_id", "eot_id", "audio_start_id", "audio_end_id", "audio_patch_id", "tts_start_id", "tts_end_id",
             "tts_pad_id", "audio_pad_id", "think_start_id", "think_end_id")
    return {getattr(tok, n) for n in names if getattr(tok, n, None) is not None}
