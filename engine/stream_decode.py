"""Generated token ids -> engine events, one id at a time.

`EventDecoder(tokenizer, reply)` holds all the state of one reply:
- incremental detokenization: text is released only at whole characters
  (a Chinese character or an emoji spread over several byte-level tokens is
  never cut);
- TA4 spoken replies: text ids between `<tts_start>` and `<tts_end>` become
  `TextDelta(channel="speech")`, `<audio_k>` ids become `SpeechCodes` (in
  groups of up to 4, the TA4 group size), `<tts_pad>` and `<audio_6561>` are
  dropped; text after `<tts_end>` is on channel "text";
- tool calls: text inside `<tool_call>...</tool_call>` is not emitted as text;
  a `ToolCall` is emitted when the call closes (or at `finish`);
- Think models: text inside `<think>...</think>` is on channel "think"
  (a `reply="think"` prompt already opened the `<think>`).
Control ids (`<|BOT|>`, `<|EOT|>`, `<|endoftext|>`, audio input markers) emit nothing.
"""
from __future__ import annotations

from typing import Iterable

from stepvoice.engine.events import EngineEvent, SpeechCodes, TextDelta, ToolCall
from stepvoice.engine.tokenizer import THINK_END, THINK_START, StepTokenizer
from stepvoice.engine.toolcall import CLOSE, OPEN, parse_call, parse_tool_calls, scan_call_end

TA4_GROUP = 4
MAX_PENDING_IDS = 8  # a character spans at most 4 bytes; give up waiting after this many ids


def _held_prefix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a tag
    (it may become the tag when more text arrives)."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:n]):
                best = n
                break
    return best


class _Detokenizer:
    """Text ids -> text, released at character boundaries."""

    def __init__(self, tokenizer: StepTokenizer) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd") and len(self.ids) < MAX_PENDING_IDS:
            return ""  # the last character is still incomplete
        self.ids = []
        return text

    def flush(self) -> str:
        text = self.tok.decode(self.ids) if self.ids else ""
        self.ids = []
        return text


class _TagScanner:
    """Splits released text into plain text, think text and tool calls."""

    def __init__(self, thinking: bool) -> None:
        self.state = "think" if thinking else "plain"
        self.buf = ""
        # whitespace right after </think> ("\n\n" before the answer) is layout, not content
        self.after_think = False

    def feed(self, text: str, channel: str) -> list[EngineEvent]:
        self.buf += text
        out: list[EngineEvent] = []
        while self.buf:
            if self.state == "plain":
                hits = [(i, tag) for tag in (OPEN, THINK_START) if (i := self.buf.find(tag)) >= 0]
                if not hits:
                    keep = _held_prefix(self.buf, (OPEN, THINK_START))
                    self._emit(out, self.buf[:len(self.buf) - keep], channel)
                    self.buf = self.buf[len(self.buf) - keep:]
                    break
                i, tag = min(hits)
                self._emit(out, self.buf[:i], channel)
                self.buf = self.buf[i + len(tag):]
                self.state = "call" if tag == OPEN else "think"
            elif self.state == "think":
                i = self.buf.find(THINK_END)
                if i < 0:
                    keep = _held_prefix(self.buf, (THINK_END,))
                    self._emit(out, self.buf[:len(self.buf) - keep], "think")
                    self.buf = self.buf[len(self.buf) - keep:]
                    break
                self._emit(out, self.buf[:i], "think")
                self.buf = self.buf[i + len(THINK_END):]
                self.state = "plain"
                self.after_think = True
            else:  # inside a tool call
                end, kind = scan_call_end(self.buf, 0)
                if end < 0:
                    break  # wait for the close
                if kind == "close":
                    out.append(parse_call(self.buf[:end], raw=OPEN + self.buf[:end + len(CLOSE)]))
                    self.buf = self.buf[end + len(CLOSE):]
                else:  # a new call opened first: this one was never closed
                    out.append(parse_call(self.buf[:end], raw=OPEN + self.buf[:end], closed=False))
                    self.buf = self.buf[end:]
                self.state = "plain"
        return out

    def flush_plain(self, channel: str) -> list[EngineEvent]:
        """Release text held back as a possible tag start (before a channel switch)."""
        out: list[EngineEvent] = []
        if self.state == "plain" and self.buf:
            self._emit(out, self.buf, channel)
            self.buf = ""
        self.after_think = False
        return out

    def set_thinking(self, thinking: bool, channel: str) -> list[EngineEvent]:
        """A `<think>` / `</think>` given as its own token id (whatever its text)."""
        out: list[EngineEvent] = []
        if thinking and self.state == "plain":
            out = self.flush_plain(channel)
            self.state = "think"
        elif not thinking and self.state == "think":
            self._emit(out, self.buf, "think")
            self.buf = ""
            self.state = "plain"
            self.after_think = True
        return out

    def finish(self, channel: str) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        if self.state == "call":
            rest, calls = parse_tool_calls(OPEN + self.buf)
            out.extend(calls)
            self._emit(out, rest, channel)
        else:
            self._emit(out, self.buf, "think" if self.state == "think" else channel)
        self.buf = ""
        self.state = "plain"
        return out

    def _emit(self, out: list[EngineEvent], text: str, channel: str) -> None:
        if self.after_think and channel != "think":
            text = text.lstrip()
            if not text:
                return
            self.after_think = False
        if text:
            out.append(TextDelta(text, channel))  # type: ignore[arg-type]


class EventDecoder:
    """All state of decoding one reply. `push(id)` and `finish()` return new events.

    Accumulated results: `text` (channel "text"), `speech_text`, `think_text`,
    `codes`, `tool_calls`, `token_ids` (every id pushed)."""

    def __init__(self, tokenizer: StepTokenizer, reply: str = "text") -> None:
        if reply not in ("text", "speech", "think"):
            raise ValueError(f"reply must be text, speech or think, not {reply!r}")
        self.tok = tokenizer
        self.reply = reply
        self._channel = "speech" if reply == "speech" else "text"
        self._detok = _Detokenizer(tokenizer)
        self._tags = _TagScanner(thinking=reply == "think")
        self._pending_codes: list[int] = []
        self.text = ""
        self.speech_text = ""
        self.think_text = ""
        self.codes: list[int] = []
        self.tool_calls: list[ToolCall] = []
        self.token_ids: list[int] = []
        self.finished = False

    # ---- public ------------------------------------------------------------------
    def push(self, token_id: int) -> list[EngineEvent]:
        token_id = int(token_id)
        self.token_ids.append(token_id)
        tok = self.tok
        code = tok.code_of(token_id)
        if code is not None:
            self._pending_codes.append(code)
            return self._record(self._flush_codes() if len(self._pending_codes) >= TA4_GROUP else [])
        if token_id in (tok.think_start_id, tok.think_end_id):
            events = self._flush_text()
            return self._record(events + self._tags.set_thinking(token_id == tok.think_start_id, self._channel))
        if tok.is_text(token_id):
            events = self._flush_codes()
            text = self._detok.push(token_id)
            if text:
                events += self._tags.feed(text, self._channel)
            return self._record(events)
        if token_id == tok.tts_start_id:
            return self._record(self._switch("speech"))
        if token_id == tok.tts_end_id:
            return self._record(self._switch("text"))
        return []  # pads, BOT/EOT, endoftext, audio-input markers

    def push_many(self, token_ids: Iterable[int]) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        for token_id in token_ids:
            events += self.push(token_id)
        return events

    def start_speech(self) -> list[EngineEvent]:
        """Decode what follows as a TA4 spoken reply (the prompt itself ended in `<tts_start>`,
        e.g. the second step of a Think model)."""
        return self._record(self._switch("speech"))

    def finish(self) -> list[EngineEvent]:
        """Release everything still held: codes, an incomplete character, a held-back
        tag prefix, an unclosed tool call (parsed as far as it goes) or thought."""
        if self.finished:
            return []
        self.finished = True
        events = self._flush_text() + self._tags.finish(self._channel)
        return self._record(events)

    # ---- internals ---------------------------------------------------------------
    def _flush_text(self) -> list[EngineEvent]:
        events = self._flush_codes()
        text = self._detok.flush()
        if text:
            events += self._tags.feed(text, self._channel)
        return events

    def _switch(self, channel: str) -> list[EngineEvent]:
        events = self._flush_text() + self._tags.flush_plain(self._channel)
        self._channel = channel
        return events

    def _flush_codes(self) -> list[EngineEvent]:
        if not self._pending_codes:
            return []
        codes, self._pending_codes = tuple(self._pending_codes), []
        return [SpeechCodes(codes)]

    def _record(self, events: list[EngineEvent]) -> list[EngineEvent]:
        for e in events:
            if isinstance(e, TextDelta):
                if e.channel == "speech":
                    self.speech_text += e.text
                elif e.channel == "think":
                    self.think_text += e.text
                else:
                    self.text += e.text
            elif isinstance(e, SpeechCodes):
                self.codes.extend(e.codes)
            elif isinstance(e, ToolCall):
                self.tool_calls.append(e)
        return events


class ThinkEnd:
    """Watches a Think model's first phase for the decoded text `</think>`.

    The official HF example stops on the stop STRING `</think>` (examples-think.py
    line 13, `stop_strings=['</think>']`), not on a token: on the real tokenizer
    `</think>` is ordinary text spread over several tokens. Like transformers'
    StopStringCriteria, `push` reports the first id whose text completes the string.
    `thought` is then the text before `</think>` (text ids only: stepaudio2.py line 55
    decodes ids below `<audio_start>`); the second phase is opened with it."""

    WINDOW = 16  # ids decoded at each step: `</think>` is 8 characters, each id adds at least one

    def __init__(self, tokenizer: StepTokenizer) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []
        self.done = False
        self.thought = ""

    def push(self, token_id: int) -> bool:
        """Add one generated id; True when the text now holds `</think>` (the stop)."""
        if self.done:
            return True
        self.ids.append(int(token_id))
        if THINK_END not in self.tok.decode(self.ids[-self.WINDOW:]):
            return False
        text = self.tok.decode([i for i in self.ids if i < self.tok.text_limit])
        cut = text.find(THINK_END)
        self.thought = text[:cut] if cut >= 0 else text
        self.done = True
        return True


def decode_all(tokenizer: StepTokenizer, token_ids: Iterable[int], reply: str = "text") -> list[EngineEvent]:
    """Every event of a finished id sequence (for tests and non-streaming callers)."""
    decoder = EventDecoder(tokenizer, reply)
    return decoder.push_many(token_ids) + decoder.finish()


__all__ = ["EventDecoder", "ThinkEnd", "decode_all"]
