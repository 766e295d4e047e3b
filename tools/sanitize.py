"""Neutralise text that could forge turns, tool calls or audio tokens once it is tokenised.

Tool results and retrieved passages go back to the model inside an `input`
turn. If such text contained `<|EOT|>`, `<tool_call>` or `<audio_17>`, the
tokenizer would turn it into the real special token and the data could end
the turn, fake a call or inject speech. A zero-width space after the `<`
(and before the `>` of `|>`) keeps the text readable but stops the tokenizer
from matching any special token.
"""
from __future__ import annotations

import re

ZWSP = "\u200b"

# `<` followed by `|`, `/` or a tag name starts every special token of the
# Step-Audio 2 / Qwen2 vocabulary (<|BOT|>, </tool_call>, <tts_start>, <audio_0>, <think>).
_TAG_OPEN = re.compile(r"<(?=[|/A-Za-z_])")
_PIPE_CLOSE = re.compile(r"\|>")


def neutralize(text: str) -> str:
    """Return `text` with every special-token look-alike broken by a zero-width space."""
    text = _TAG_OPEN.sub("<" + ZWSP, text)
    return _PIPE_CLOSE.sub("|" + ZWSP + ">", text)
