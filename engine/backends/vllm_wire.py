"""The wire format of StepFun's vLLM fork (OpenAI chat completions + `tts_content`).

Two pure halves, no I/O:
- `build_payload(messages, options)`: our `Message` list -> the JSON body of
  `POST /v1/chat/completions`, in the form the fork's `step_audio_2`
  tokenizer mode renders into the official chat format (roles sent verbatim,
  audio as 25 s base64 16 kHz int16 wav `input_audio` items before the text,
  earlier spoken replies as `tts_content`, tools in the `tools` field so the
  fork's tool parser runs, a spoken reply opened with a `<tts_start>`
  assistant message and `continue_final_message`).
- `ReplyDecoder`: streamed `delta`s (or one non-streamed `message`) -> the
  same `engine.events` the local engine emits.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import wave
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from stepvoice.engine.errors import AudioError
from stepvoice.engine.events import EngineEvent, SpeechCodes, TextDelta, ToolCall
from stepvoice.engine.messages import Audio, Message, Speech, Text
from stepvoice.engine.options import GenerationOptions
from stepvoice.engine.toolcall import CLOSE as TOOL_CLOSE, OPEN as TOOL_OPEN, parse_call, scan_call_end

SAMPLE_RATE = 16000
PIECE_SECONDS = 25  # the model hears at most 25 s per <audio_start> block
TTS_START = "<tts_start>"
THINK_OPEN = "\n<think>\n"
THINK_CLOSE = "</think>"
AUDIO_TOKEN = re.compile(r"<audio_(\d+)>")
MAX_CODE = 6560  # <audio_6561> is the pad, never a speech code


# ---- request ----------------------------------------------------------------------


def wav_base64(samples: np.ndarray) -> str:
    """16 kHz float32 mono -> base64 of a 16-bit PCM wav file (what the fork decodes)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(f"audio must be mono (1-D), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AudioError("audio contains NaN or infinite samples")
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return base64.b64encode(buf.getvalue()).decode("ascii")


def audio_items(samples: np.ndarray) -> list[dict]:
    """One `input_audio` item per 25 s piece (empty audio gives none)."""
    step = PIECE_SECONDS * SAMPLE_RATE
    return [
        {"type": "input_audio", "input_audio": {"data": wav_base64(samples[i : i + step]), "format": "wav"}}
        for i in range(0, len(samples), step)
    ]


def speech_audio_string(codes: Sequence[int]) -> str:
    return "".join(f"<audio_{int(c)}>" for c in codes)


def _human_content(msg: Message) -> str | list[dict]:
    audio = [p for p in msg.content if isinstance(p, Audio)]
    text = "".join(p.text for p in msg.content if isinstance(p, Text))
    if not audio:
        return text
    items = [item for a in audio for item in audio_items(a.samples)]  # audio always before the text
    if text:
        items.append({"type": "text", "text": text})
    return items


def _assistant_message(msg: Message) -> dict:
    speech = [p for p in msg.content if isinstance(p, Speech)]
    text = "".join(p.text for p in msg.content if isinstance(p, Text))
    if not speech:
        return {"role": "assistant", "content": text}
    # The fork re-interleaves tts_text and tts_audio (TA4) and puts `content`
    # after <tts_end>: exactly the place of the non-spoken tail (e.g. a tool call).
    tts_text = "".join(s.text for s in speech)
    codes = [c for s in speech for c in s.codes]
    tail = "".join(s.tail_text for s in speech) + text
    return {
        "role": "assistant",
        "content": tail,
        "tts_content": {"tts_text": tts_text, "tts_audio": speech_audio_string(codes)},
    }


def build_payload(
    messages: Sequence[Message], options: GenerationOptions, model: str, *, stream: bool = True, prefill: str | None = None
) -> dict[str, Any]:
    """The request body. `prefill` overrides the opening of the reply (the
    Think model's second phase); by default it follows `options.reply`."""
    wire: list[dict] = []
    tools: list | None = None
    for msg in messages:
        if msg.role == "tool_json_schemas":
            try:
                tools = json.loads(msg.plain_text)
            except json.JSONDecodeError:
                tools = None
            if isinstance(tools, list):
                continue  # sent in `tools`: the fork writes the schema turn itself
            wire.append({"role": msg.role, "content": msg.plain_text})
        elif msg.role == "human":
            wire.append({"role": "human", "content": _human_content(msg)})
        elif msg.role == "assistant":
            wire.append(_assistant_message(msg))
        else:  # system, input: plain text turns, role name as the model knows it
            wire.append({"role": msg.role, "content": msg.plain_text})
    if prefill is None:
        prefill = {"text": None, "speech": TTS_START, "think": THINK_OPEN}[options.reply]
    payload: dict[str, Any] = {
        "model": model,
        "messages": wire,
        "stream": stream,
        "max_tokens": options.max_new_tokens,
        "skip_special_tokens": False,  # keep <audio_N>, <tool_call> visible to the parsers
        "parallel_tool_calls": False,
    }
    if prefill:
        wire.append({"role": "assistant", "content": prefill})
        payload["continue_final_message"] = True
        payload["add_generation_prompt"] = False
    else:
        payload["continue_final_message"] = False
        payload["add_generation_prompt"] = True
    # unset sampling values (None) are left to the server (its model's generation_config)
    for name in ("temperature", "top_p", "repetition_penalty"):
        if getattr(options, name) is not None:
            payload[name] = getattr(options, name)
    if options.top_k:
        payload["top_k"] = options.top_k
    if options.seed is not None:
        payload["seed"] = options.seed
    if tools:
        payload["tools"] = tools
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


# ---- reply ------------------------------------------------------------------------


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class ReplyDecoder:
    """Turns the fork's reply fields into engine events, one stream per object.

    `text_channel` is where plain `content` goes ("text", or "think" during a
    Think model's reasoning phase). Tool calls arrive either parsed by the
    fork (`tool_calls`) or, when it runs without its tool parser, as raw
    `<tool_call>` text inside `content`; the raw text is held back from the
    text deltas and turned into `ToolCall`s at the end.
    """

    text_channel: str = "text"
    content: str = ""  # all plain content seen (for the Think model's second phase)
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)
    _calls: dict[int, _PendingCall] = field(default_factory=dict)
    _held: str = ""  # content that may be the start of a <tool_call>
    _raw_calls: list[str] = field(default_factory=list)
    _in_raw_call: bool = False

    def chunk(self, data: dict) -> list[EngineEvent]:
        """One parsed SSE `data:` object."""
        if data.get("usage"):
            self.usage = data["usage"]
        events: list[EngineEvent] = []
        for choice in data.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or choice.get("message") or {}
            events += self._fields(delta)
        return events

    def message(self, data: dict) -> list[EngineEvent]:
        """A whole non-streamed response body."""
        return self.chunk(data) + self.finish()

    def finish(self) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        if self._held and not self._in_raw_call:
            events.append(TextDelta(self._held, self.text_channel))
        elif self._in_raw_call:
            self._raw_calls.append(self._held)
        self._held = ""
        self._in_raw_call = False
        for _, c in sorted(self._calls.items()):
            events.append(_tool_call(c.name, c.arguments, c.id or None))
        self._calls.clear()
        for raw in self._raw_calls:
            events.append(_raw_tool_call(raw))
        self._raw_calls.clear()
        return events

    def _fields(self, delta: dict) -> list[EngineEvent]:
        events: list[EngineEvent] = []
        tts = delta.get("tts_content") or {}
        tts_text = tts.get("tts_text")
        content = delta.get("content")
        if tts_text:
            events.append(TextDelta(tts_text, "speech"))
        elif content:
            # The official client reads `content` only when there is no tts_text:
            # the fork may repeat the spoken text there.
            self.content += content
            events += self._plain(content)
        reasoning = delta.get("reasoning_content")
        if reasoning:
            events.append(TextDelta(reasoning, "think"))
        audio = tts.get("tts_audio")
        if audio:
            codes = tuple(int(m) for m in AUDIO_TOKEN.findall(audio) if int(m) <= MAX_CODE)
            if codes:
                events.append(SpeechCodes(codes))
        for tc in delta.get("tool_calls") or []:
            pending = self._calls.setdefault(int(tc.get("index", len(self._calls))), _PendingCall())
            fn = tc.get("function") or {}
            pending.id = tc.get("id") or pending.id
            pending.name += fn.get("name") or ""
            args = fn.get("arguments")
            if isinstance(args, dict):  # some servers send an object, not a string
                args = json.dumps(args, ensure_ascii=False)
            pending.arguments += args or ""
        return events

    def _plain(self, text: str) -> list[EngineEvent]:
        """Pass text through, holding back anything that is or may become a raw tool call."""
        buf = self._held + text
        self._held = ""
        out = ""
        while buf:
            if self._in_raw_call:
                end, kind = scan_call_end(buf, 0)  # a </tool_call> inside a JSON string does not count
                if end < 0:
                    self._held = buf
                    break
                self._raw_calls.append(buf[:end])
                if kind == "close":
                    buf = buf[end + len(TOOL_CLOSE) :]
                    self._in_raw_call = False
                else:  # a new call began before this one closed
                    buf = buf[end + len(TOOL_OPEN) :]
                continue
            start = buf.find(TOOL_OPEN)
            if start >= 0:
                out += buf[:start]
                buf = buf[start + len(TOOL_OPEN) :]
                self._in_raw_call = True
                continue
            keep = _partial_suffix(buf, TOOL_OPEN)
            out += buf[: len(buf) - keep]
            self._held = buf[len(buf) - keep :]
            break
        return [TextDelta(out, self.text_channel)] if out else []


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def _tool_call(name: str, arguments: str, call_id: str | None) -> ToolCall:
    """A call the fork parsed, checked like any other (tolerant JSON, errors reported)."""
    call = parse_call(f"function\n{name}\n{arguments}")
    return dataclasses.replace(call, id=call_id) if call_id else call


def _raw_tool_call(body: str) -> ToolCall:
    """`function\\n{name}\\n{json}` as the model writes it between the markers."""
    return parse_call(body)
