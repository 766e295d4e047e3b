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

from stepvoice.engine.events import Event, SpeechCodes, TextDelta, ToolCall, TurnEnd
from stepvoice.engine.messages import Message, Speech, Text

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
            # raw ids verbatim; a Think reply's ids are its second phase only (the official history)
            ids = self.token_ids if reply in ("speech", "think") else None
            if ids and tokenizer is not None and ids[-1] == tokenizer.eot_id:
                ids = ids[:-1]  # the prompt builder adds <|EOT|> itself
            return Message("assistant", [Speech(self.speech_text, tuple(self.codes), ids, self.tail)])
        if self.tail:
            # The model's own ids go back verbatim: re-encoding decoded text could turn text
            # pieces that spell "<|EOT|>" into the real token (think ids also hold the thought).
            ids = self.token_ids if reply == "text" else None
            if ids and tokenizer is not None and ids[-1] == tokenizer.eot_id:
                ids = ids[:-1]
            return Message("assistant", [Text(self.tail, tuple(ids) if ids else None)])
        return None


def _call_text(call: ToolCall) -> str:
    import json

    return f"<tool_call>function\n{call.name}\n{json.dumps(call.arguments, ensure_ascii=False)}</tool_call>"


class History:
    """The messages of one conversation (system prompt and tool schemas are added per request)."""

    def __init__(self, messages: list[Message] | None = None):
        self.messages: list[Message] = list(messages or [])
        # Replies of the current user turn with how their text lines up with their codes (for truncation).
        self._turn_replies: list[tuple[Message, ReplyRecord]] = []

    def append(self, message: Message) -> None:
        if message.role == "human":
            self._turn_replies = []
        self.messages.append(message)

    def add_reply(self, record: ReplyRecord, tokenizer: TokenizerLike | None = None, reply: str = "text") -> Message | None:
        msg = record.message(tokenizer, reply)
        if msg is not None:
            self.messages.append(msg)
            self._turn_replies.append((msg, record))
        return msg

    def spoken_replies(self) -> list[int]:
        """Indexes of the spoken assistant turns after the latest user turn, oldest first."""
        start = 0
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "human":
                start = i + 1
                break
        return [i for i in range(start, len(self.messages))
                if self.messages[i].role == "assistant" and any(isinstance(p, Speech) for p in self.messages[i].content)]

    def truncate_last_reply(self, played_s: float, tokenizer: TokenizerLike | None = None) -> Message | None:
        """Keep only what the user heard of the reply to the latest user turn.

        `played_s` counts the audio of all its spoken segments in order (a reply
        that called a tool is two segments: before and after the call). The
        segment where playback stopped is cut; later ones lose their speech
        (a tool call they hold stays, its result is in history). Returns the
        last spoken turn kept, or None if nothing was heard."""
        indexes = self.spoken_replies()
        if not indexes:
            return None
        left = max(0, math.ceil(max(0.0, played_s) * CODES_PER_SECOND - 1e-9))
        kept: Message | None = None
        for index in list(indexes):
            msg = self.messages[index]
            speech = next(p for p in msg.content if isinstance(p, Speech))
            if left >= len(speech.codes):
                left -= len(speech.codes)
                kept = msg
                continue
            new = self._cut(index, msg, speech, left, tokenizer)
            left = 0
            if new is not None and new.content and isinstance(new.content[0], Speech) and new.content[0].codes:
                kept = new
        for index in sorted(indexes, reverse=True):  # drop turns left empty (from the end: indexes stay valid)
            if index < len(self.messages) and not self.messages[index].content:
                del self.messages[index]
        return kept

    def _cut(self, index: int, msg: Message, speech: Speech, heard: int, tokenizer: TokenizerLike | None) -> Message:
        followed = index + 1 < len(self.messages)
        tail = speech.tail_text if followed else ""  # a call that was already answered stays
        if heard == 0:
            new = Message("assistant", [Text(tail)] if tail else [])
        else:
            if speech.token_ids and tokenizer is not None:
                ids, text = _truncate_ids(speech.token_ids, heard, tokenizer)
            else:
                ids, text = None, self._heard_text(msg, speech, heard)
            new = Message("assistant", [Speech(text, speech.codes[:heard], ids, tail)])
        self.messages[index] = new
        self._turn_replies = [(new if m is msg else m, r) for m, r in self._turn_replies]
        return new

    def _heard_text(self, msg: Message, speech: Speech, heard: int) -> str:
        for m, record in self._turn_replies:
            if m is msg:
                return "".join(p for before, p in record.speech_pieces if before < heard)
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
