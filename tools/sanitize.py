"""Untrusted text (tool results, retrieved passages) needs no rewriting any more.

Tool results and retrieved passages go back to the model inside an `input`
turn. Text such as `<|EOT|>`, `<tool_call>` or `<audio_17>` in them used to be
broken up with zero-width spaces, which also mangled ordinary HTML and code.
The prompt builder now encodes every message's content as untrusted text
(`stepvoice.engine.untrusted.encode_untrusted`): special-token strings become
ordinary text pieces, so no special id can arise from data and the text
decodes back exactly as it was. `neutralize` stays for plugins that call it
and returns the text unchanged.
"""
from __future__ import annotations


def neutralize(text: str) -> str:
    """The text unchanged (special tokens are neutralised by the tokenizer, see the module doc)."""
    return text
