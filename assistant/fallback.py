"""What the assistant says when a tool failed and the model then stayed silent."""
from __future__ import annotations

FALLBACK = {
    "zh": "抱歉，{name}没有成功，请稍后再试。",
    "en": "Sorry, {name} did not work this time. Please try again later.",
}


def fallback_text(language: str, failed_tools: list[str], *, spoke: bool, text: str) -> str | None:
    """The apology for the last failed tool, or None when there is none or the model said something."""
    if not failed_tools or spoke or text.strip():
        return None
    return FALLBACK.get(language, FALLBACK["en"]).format(name=failed_tools[-1])


__all__ = ["FALLBACK", "fallback_text"]
