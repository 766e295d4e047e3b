"""How the assistant speaks: a style line at the end of the system prompt.

Step-Audio 2 takes its speaking manner from the system prompt; the official
tool-calling example ends it with the line "请用默认女声与用户交流" ("talk with
the user in the default female voice"). A style is phrased the same way:
"请用{manner}与用户交流" (English prompts: "Please talk with the user {manner}.").
Presets name the controls the seed model demonstrates (speed, emotion,
whisper, dialect, singing); any other text is used as the line itself.
"""
from __future__ import annotations

# name -> (Chinese manner, English manner), each slotting into the official sentence
PRESETS: dict[str, tuple[str, str]] = {
    "slow": ("缓慢的语速", "slowly"),
    "fast": ("较快的语速", "quickly"),
    "whisper": ("耳语的方式轻声", "in a soft whisper"),
    "excited": ("兴奋的语气", "in an excited tone"),
    "happy": ("开心的语气", "in a happy tone"),
    "sad": ("悲伤的语气", "in a sad tone"),
    "angry": ("生气的语气", "in an angry tone"),
    "gentle": ("温柔的语气", "in a gentle tone"),
    "serious": ("严肃的语气", "in a serious tone"),
    "sichuanese": ("四川话", "in Sichuanese"),
    "cantonese": ("粤语", "in Cantonese"),
    "singing": ("唱歌的方式", "by singing"),
}
MAX_STYLE_CHARS = 500


def style_line(style: str | None, language: str = "zh") -> str | None:
    """The system-prompt line for `style` (a preset name or free text); None for no style."""
    if style is None or not style.strip():
        return None
    text = " ".join(style.split())[:MAX_STYLE_CHARS]  # one line: the prompt is line-structured
    manner = PRESETS.get(text.lower())
    if manner is None:
        return text
    return f"请用{manner[0]}与用户交流" if language == "zh" else f"Please talk with the user {manner[1]}."


def with_style(system_prompt: str, style: str | None, language: str = "zh") -> str:
    """`system_prompt` with the style line as its last line (the rest stays a cacheable prefix)."""
    line = style_line(style, language)
    return system_prompt if line is None else f"{system_prompt}\n{line}"


__all__ = ["PRESETS", "style_line", "with_style"]
