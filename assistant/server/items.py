"""Client-created conversation items (`conversation.item.create`, `response.create`'s
`input`) -> history turns of the assistant session, and their wire form.

User, assistant and system messages can all be created, so apps can seed a
conversation (a greeting already spoken, earlier turns from their own store).
"""
from __future__ import annotations

from typing import Any

from stepvoice.engine.messages import Audio, Message, Text
from stepvoice.assistant.server.protocol import MODEL_RATE, PCM_RATE, ProtocolError, decode_pcm16, resample

ROLES = {"user": "human", "assistant": "assistant", "system": "system"}
TEXT_PARTS = {"user": ("input_text", "text"), "system": ("input_text", "text"), "assistant": ("output_text", "text")}


class ItemError(ValueError):
    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def message_from_item(item: dict[str, Any], limits: Any) -> Message:
    """A message item -> one history turn. Raises ItemError naming the bad field."""
    role = item.get("role")
    if role not in ROLES:
        raise ItemError("item.role must be user, assistant or system", "item.role")
    content = item.get("content")
    if not isinstance(content, list):
        raise ItemError("'item.content' must be a list", "item.content")
    parts: list[Text | Audio] = []
    chars = 0
    for i, part in enumerate(content):
        ptype = part.get("type") if isinstance(part, dict) else None
        where = f"item.content[{i}]"
        if ptype in TEXT_PARTS[role]:
            text = part.get("text")
            if not isinstance(text, str):
                raise ItemError(f"'{where}.text' must be a str", f"{where}.text")
            chars += len(text)
            parts.append(Text(text))
        elif ptype == "output_audio" and role == "assistant":
            transcript = part.get("transcript")
            if not isinstance(transcript, str):  # the model reads what was said, not the sound
                raise ItemError(f"'{where}.transcript' must be a str", f"{where}.transcript")
            chars += len(transcript)
            parts.append(Text(transcript))
        elif ptype == "input_audio" and role == "user":
            audio = part.get("audio")
            if not isinstance(audio, str):
                raise ItemError(f"'{where}.audio' must be a str", f"{where}.audio")
            try:
                pcm = decode_pcm16(audio, limits.max_append_bytes)
            except ProtocolError as e:
                raise ItemError(str(e), f"{where}.audio") from None
            transcript = part.get("transcript") if isinstance(part.get("transcript"), str) else None
            parts.append(Audio(resample(pcm, PCM_RATE, MODEL_RATE), transcript))
        else:
            allowed = " or ".join(TEXT_PARTS[role][:1] + (("input_audio",) if role == "user" else
                                                          ("output_audio",) if role == "assistant" else ()))
            raise ItemError(f"{where}.type must be {allowed} for a {role} message", f"{where}.type")
    if chars > limits.max_text_chars:
        raise ItemError(f"text too long: at most {limits.max_text_chars} characters", "item.content")
    if not parts:
        raise ItemError("the message has no content", "item.content")
    return Message(ROLES[role], parts)


def wire_message(item_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """The item as the server reports it (audio bytes are not echoed back)."""
    content = []
    for part in item["content"]:
        ptype = part["type"]
        if ptype in ("input_text", "text", "output_text"):
            kind = "output_text" if item["role"] == "assistant" else "input_text"
            content.append({"type": kind, "text": part["text"]})
        elif ptype in ("input_audio", "output_audio"):
            transcript = part.get("transcript")
            content.append({"type": ptype, **({"transcript": transcript} if isinstance(transcript, str) else {})})
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": item["role"], "status": "completed",
            "content": content}
