"""Task presets: the official Step-Audio 2 system prompts and sampling for each task.

The prompts are those of the official examples (stepfun-ai/Step-Audio2
`examples.py`, `examples-vllm.py`, `examples-think.py`). A preset decides the
system prompt, the reply mode it forces (if any), its sampling and whether
tools are offered.

Sampling: exactly what the official HF example of the task passes to
`generate` (None = not passed). What a preset leaves unset is filled by the
backend from the checkpoint's generation_config.json, else transformers'
defaults (engine.options), as the official code gets it:
- chat, spoken or not: temperature 0.7, top_p 0.9, repetition_penalty 1.05
  (examples.py lines 109 and 125, the tool-calling chat; stepaudio2.py 142-203);
- asr: greedy (examples.py line 8 passes no do_sample; examples-vllm.py line 12 temperature=0);
- translate to text and caption: temperature 0.1 (examples.py lines 19 and 30);
- translate to speech: temperature 0.7 (examples.py line 41, S2ST);
- paralinguistic (the universal audio caption prompt): temperature 0.5, top_p 0.9 (examples.py line 165);
- think: temperature 0.7 (examples-think.py lines 13 and 17).
Precedence (assistant.request): flags > the task's sampling > [generation] for
every task but chat; for chat, [generation] values that are set tune it over the
official chat sampling.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Literal

from stepvoice.engine.errors import ConfigError

TaskName = Literal["chat", "asr", "translate", "caption", "paralinguistic", "think"]
TASKS: tuple[str, ...] = ("chat", "asr", "translate", "caption", "paralinguistic", "think")

# Official example prompts.
ASR_PROMPT = "请记录下你所听到的语音内容。"
SPEECH_CHAT_PROMPT = "请用语音与我交流。"
CAPTION_PROMPT = "Please briefly explain the important events involved in this audio clip."
PARALINGUISTIC_PROMPT = (
    "你是一位经验丰富的音频分析专家，擅长对各种语音音频进行深入细致的分析。你的任务不仅仅是将音频内容准确转写为文字，"
    "还要对说话人的声音特征（如性别、年龄、情绪状态）、背景声音、环境信息以及可能涉及的事件进行全面描述。"
    "请以专业、客观的视角，详细、准确地完成每一次分析和转写。"
)
THINK_PROMPT = (
    "你的名字叫小跃，你是由阶跃星辰(StepFun)公司训练出来的语音大模型，你能听见用户的声音特征并在思维过程中描述出来，"
    "请激活深度思考模式，通过逐步分析、逻辑推理来解决用户的问题。"
)
TRANSLATE_ZH = "请仔细聆听这段语音，然后将其内容翻译成{lang}。"
TRANSLATE_ZH_SPOKEN = "请仔细聆听这段语音，然后将其内容翻译成{lang}并用语音播报。"
TRANSLATE_EN = "Please listen carefully to this audio and then translate its content into {lang}."
TRANSLATE_EN_SPOKEN = "Please listen carefully to this audio and then translate its content into {lang} speech."

# The lines of the official tool-calling system prompt, and English counterparts.
CHAT_LINES = {
    "zh": {
        "persona": "你的名字叫做小跃，是由阶跃星辰公司训练出来的语音大模型。",
        "tools": "你具备调用工具解决问题的能力，你需要根据用户的需求和上下文情景，自主选择是否调用系统提供的工具来协助用户。",
        "manner": "你情感细腻，观察能力强，擅长分析用户的内容，并作出善解人意的回复，说话的过程中时刻注意用户的感受，富有同理心，提供多样的情绪价值。",
        "voice": "请用默认女声与用户交流",
    },
    "en": {
        "persona": "Your name is Xiaoyue, a speech model trained by StepFun.",
        "tools": "You can call tools to solve problems; decide from the user's needs and the context whether to call the tools the system provides.",
        "manner": "You are perceptive and empathetic, attentive to how the user feels, and reply considerately.",
        "voice": "Talk with the user in the default female voice.",
    },
}
WEEKDAYS_ZH = "一二三四五六日"
LANGUAGES = {  # code -> (Chinese name, English name)
    "zh": ("中文", "Chinese"),
    "en": ("英文", "English"),
    "ja": ("日文", "Japanese"),
}


@dataclass(frozen=True)
class Preset:
    """What a task sets: the system prompt, the reply mode it forces (None = the caller's), sampling."""

    name: str
    system_prompt: str
    reply: Literal["text", "speech", "think"] | None = None
    temperature: float | None = None  # None = not set by the official example (see the module doc)
    top_p: float | None = None
    use_tools: bool = True
    keep_history: bool = True  # False: one-shot tasks (asr, translate) see only the current input
    top_k: int | None = None
    repetition_penalty: float | None = None

    def sampling(self) -> dict[str, float | int | None]:
        """The sampling values this task sets (None = not set)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "repetition_penalty": self.repetition_penalty}


def date_line(today: _dt.date, language: str = "zh") -> str:
    if language == "zh":
        return f"今天是{today.year}年{today.month}月{today.day}日，星期{WEEKDAYS_ZH[today.weekday()]}"
    return f"Today is {today.strftime('%A, %B')} {today.day}, {today.year}."


def chat_system_prompt(*, with_tools: bool, spoken: bool, persona: str | None = None, language: str = "zh",
                       today: _dt.date | None = None) -> str:
    """The official tool-calling system prompt: persona, tool instruction, manner, today's date, voice."""
    lines = CHAT_LINES[language]
    parts = [persona or lines["persona"]]
    if with_tools:
        parts.append(lines["tools"])
    parts.append(lines["manner"])
    parts.append(date_line(today or _dt.date.today(), language))
    if spoken:
        parts.append(lines["voice"])
    return "\n".join(parts)


def translate_prompt(target_lang: str, spoken: bool, language: str = "zh") -> str:
    key = target_lang.strip().lower()
    names = LANGUAGES.get(key)
    if names is None:
        # Accept a language name as given ("French", "法语"); the model knows far more than three.
        names = (target_lang.strip(), target_lang.strip())
    if not names[0]:
        raise ConfigError("translate needs a target language (--target-lang)")
    if language == "zh":
        return (TRANSLATE_ZH_SPOKEN if spoken else TRANSLATE_ZH).format(lang=names[0])
    return (TRANSLATE_EN_SPOKEN if spoken else TRANSLATE_EN).format(lang=names[1])


def preset(task: str, *, reply: str = "text", target_lang: str | None = None, with_tools: bool = True,
           persona: str | None = None, language: str = "zh", today: _dt.date | None = None) -> Preset:
    """The preset for `task` (chat, asr, translate, caption, paralinguistic, think)."""
    spoken = reply == "speech"
    if task == "chat":
        return Preset("chat", chat_system_prompt(with_tools=with_tools, spoken=spoken, persona=persona,
                                                 language=language, today=today),
                      temperature=0.7, top_p=0.9, repetition_penalty=1.05)
    if task == "asr":
        return Preset("asr", ASR_PROMPT, reply="text", temperature=0.0, use_tools=False, keep_history=False)
    if task == "translate":
        if not target_lang:
            raise ConfigError("the translate task needs a target language (--target-lang, e.g. en, zh, ja)")
        return Preset("translate", translate_prompt(target_lang, spoken, language), reply="speech" if spoken else "text",
                      temperature=0.7 if spoken else 0.1, use_tools=False, keep_history=False)
    if task == "caption":
        return Preset("caption", CAPTION_PROMPT, reply="text", temperature=0.1, use_tools=False, keep_history=False)
    if task == "paralinguistic":
        return Preset("paralinguistic", PARALINGUISTIC_PROMPT, reply="text", temperature=0.5, top_p=0.9,
                      use_tools=False, keep_history=False)
    if task == "think":
        return Preset("think", THINK_PROMPT, reply="think", temperature=0.7, use_tools=False)
    raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
