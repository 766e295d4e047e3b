"""Encode untrusted text so that no special token can arise from it.

Every added token of the checkpoint (`<|BOT|>`, `<|EOT|>`, `<tool_call>`,
`<audio_17>`, `<tts_start>`, ...) is matched by the tokenizer wherever its
string appears in the text. User text, tool results, retrieved passages, tool
and MCP descriptions are data: if they contain such a string, encoding them
normally would forge a turn end, a tool call or speech. Here the text is cut
right after the first character of every special-token string it contains and
the pieces are encoded one by one, so each such string becomes ordinary text
pieces (`<` + `|EOT|>`) that decode back to exactly the same characters. A final
check proves that no id of the special set is in the result; a piece that still
produced one (a merge in some vocabulary that spells a special token) is
encoded one character at a time.

The only text the prompt builder encodes with special tokens recognised is its
own: the turn headers (`<|BOT|>role\\n`), `<|EOT|>`, and reply openers.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# Special tokens of the Step-Audio 2 / Qwen2 vocabularies all look like <...>;
# candidates are found with this pattern and confirmed against the tokenizer's set.
_CANDIDATE = re.compile(r"<[^<>\s]{1,64}>")


class _SpecialSet:
    """The added-token strings and ids of one tokenizer backend."""

    def __init__(self, backend: Any) -> None:
        added = backend.get_added_tokens_decoder() if hasattr(backend, "get_added_tokens_decoder") else {}
        self.strings = {tok.content for tok in added.values()}
        self.ids = frozenset(int(i) for i in added)
        # Added tokens that do not look like <...> (none in Step-Audio 2) are found by a literal pattern.
        odd = sorted((s for s in self.strings if not _CANDIDATE.fullmatch(s)), key=len, reverse=True)
        self.odd = re.compile("|".join(re.escape(s) for s in odd)) if odd else None


@lru_cache(maxsize=8)
def _special_set(backend: Any) -> _SpecialSet:
    return _SpecialSet(backend)


def special_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of every added token (special or not) of `tokenizer` (a StepTokenizer)."""
    return _special_set(tokenizer._tok).ids


def cut_points(text: str, specials: _SpecialSet, allow: frozenset[str] = frozenset()) -> list[int]:
    """Positions just after the first character of every special-token string in `text` (but those in `allow`)."""
    cuts = set()
    for m in _CANDIDATE.finditer(text):
        if m.group(0) in specials.strings and m.group(0) not in allow:
            cuts.add(m.start() + 1)
    if specials.odd is not None:
        # overlapping matches: look again one character after each start
        pos = 0
        while True:
            m = specials.odd.search(text, pos)
            if m is None:
                break
            cuts.add(m.start() + 1)
            pos = m.start() + 1
    return sorted(cuts)


def encode_untrusted(tokenizer: Any, text: str, allow: tuple[str, ...] = ()) -> list[int]:
    """Ids of `text` with special-token strings encoded as ordinary text; none of the ids is an added token
    (except the token strings named in `allow`, e.g. the model's own `<tool_call>` markup).

    `tokenizer.decode(encode_untrusted(tokenizer, text)) == text` for NFC text (the
    Qwen2 normaliser applies NFC to every text, trusted or not)."""
    if not text:
        return []
    backend = tokenizer._tok
    specials = _special_set(backend)
    allowed = frozenset(allow)
    cuts = cut_points(text, specials, allowed)
    pieces = [text] if not cuts else [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]) if b > a]
    out: list[int] = []
    for piece in pieces:
        ids = backend.encode(piece, add_special_tokens=False).ids
        if allowed:
            ok = {backend.token_to_id(a) for a in allowed}
            bad = any(i in specials.ids and i not in ok for i in ids)
        else:
            bad = any(i in specials.ids for i in ids)
        if bad:  # a vocabulary whose merges spell a special token
            ids = [i for ch in piece for i in backend.encode(ch, add_special_tokens=False).ids]
            if any(i in specials.ids for i in ids):
                raise ValueError("the tokenizer maps a single character to a special token; cannot encode safely")
        out.extend(ids)
    return out


def has_special(tokenizer: Any, ids: Any) -> bool:
    """True when any of `ids` is an added (special) token."""
    s = special_ids(tokenizer)
    return any(int(i) in s for i in ids)


__all__ = ["encode_untrusted", "special_ids", "has_special"]
