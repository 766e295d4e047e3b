"""Timbre attributes named in English or Chinese -> one language-free set, for reranking voices.

Why: timbre descriptions are short and alike ("a ... voice"), so a small
multilingual sentence embedder ranks them mostly by language and wording
(measured on the test bank: 2 of 9 right). The words that matter form a
small closed vocabulary (gender, age, pitch, speed, texture, style, accent)
that both languages name plainly, so a bilingual lexicon maps them to shared
attributes: "低沉的男声" and "a deep male voice" both become {male, low}.
The bank ranks by embedding similarity plus an attribute agreement bonus
(and a penalty for contradictions such as high vs low).
"""
from __future__ import annotations

import re

# canonical attribute -> surface forms; English forms are matched as whole words, Chinese as substrings
LEXICON: dict[str, tuple[str, ...]] = {
    "male": ("male", "man", "men", "guy", "gentleman", "boy", "baritone", "男"),
    "female": ("female", "woman", "women", "lady", "girl", "feminine", "女"),
    "child": ("child", "kid", "boy", "girl", "childlike", "小孩", "儿童", "孩子", "童声", "男孩", "女孩", "小朋友", "萝莉", "正太"),
    "young": ("young", "youthful", "teen", "teenage", "teenager", "年轻", "青年", "少女", "少年", "小伙", "青春"),
    "mature": ("mature", "middle-aged", "adult", "middle aged", "中年", "成熟", "成年", "大叔", "阿姨"),
    "old": ("old", "elderly", "aged", "senior", "grandpa", "grandma", "grandfather", "grandmother",
            "老年", "老人", "年长", "年迈", "苍老", "爷爷", "奶奶", "老者", "大爷"),
    "low": ("deep", "low", "low-pitched", "bass", "baritone", "low pitched", "低沉", "低音", "浑厚", "厚重", "磁性", "音调低", "音调较低", "深沉"),
    "high": ("high", "high-pitched", "high pitched", "squeaky", "shrill", "treble", "piercing", "尖", "高音", "高亢", "音调高", "音调偏高", "细"),
    # not a bare 快/慢: 快乐 is "happy"
    "fast": ("fast", "quick", "rapid", "brisk", "hurried", "语速快", "快速", "很快", "较快", "飞快", "急促", "轻快"),
    "slow": ("slow", "leisurely", "unhurried", "drawling", "语速慢", "缓慢", "很慢", "较慢", "慢悠悠", "慢条斯理", "慢吞吞"),
    "hoarse": ("hoarse", "raspy", "husky", "gravelly", "rough", "croaky", "沙哑", "嘶哑", "粗哑", "烟嗓", "粗糙"),
    "soft": ("soft", "gentle", "tender", "mild", "温柔", "柔和", "轻柔", "柔美", "温和"),
    "sweet": ("sweet", "cute", "甜", "可爱", "嗲"),
    "bright": ("bright", "clear", "crisp", "清脆", "明亮", "清亮", "清晰", "清澈"),
    "warm": ("warm", "friendly", "温暖", "亲切"),
    "strong": ("powerful", "strong", "loud", "forceful", "booming", "有力", "洪亮", "响亮", "雄厚"),
    "calm": ("calm", "steady", "serene", "soothing", "composed", "平静", "平稳", "沉稳", "冷静", "稳重"),
    "lively": ("cheerful", "happy", "lively", "upbeat", "energetic", "excited", "活泼", "开朗", "欢快", "有活力", "热情"),
    "serious": ("serious", "formal", "authoritative", "stern", "严肃", "正式", "权威"),
    "breathy": ("breathy", "whisper", "whispering", "airy", "气声", "耳语", "气息"),
    "british": ("british", "uk", "england", "英国", "英式"),
    "american": ("american", "美国", "美式"),
    "german": ("german", "germany", "德国", "德语", "德式"),
    "mandarin": ("mandarin", "chinese", "普通话", "中文", "汉语", "国语"),
    "cantonese": ("cantonese", "粤语", "广东话"),
    "english": ("english", "英语", "英文"),
    "announcer": ("news", "anchor", "announcer", "announcing", "announcement", "broadcaster", "newsreader", "reader",
                  "播音", "主播", "新闻", "播报", "广播", "提示音"),
}

OPPOSITES: dict[str, tuple[str, ...]] = {
    "male": ("female",), "female": ("male",),
    "child": ("old", "mature"), "young": ("old",), "mature": ("child",), "old": ("young", "child"),
    "low": ("high",), "high": ("low",),
    "fast": ("slow",), "slow": ("fast",),
    "soft": ("strong", "hoarse"), "strong": ("soft", "breathy"), "hoarse": ("soft", "sweet", "bright"),
    "calm": ("lively",), "lively": ("calm", "serious"), "serious": ("lively",),
}

ATTRIBUTE_WEIGHT = 0.3  # an agreeing attribute outweighs the spread of embedding scores (~0.1)
CONFLICT_WEIGHT = 0.3

_ASCII = re.compile(r"^[a-z][a-z -]*$")
_PATTERNS = {
    attr: [re.compile(rf"(?<![a-z]){re.escape(f)}s?(?![a-z])") if _ASCII.match(f) else f for f in forms]
    for attr, forms in LEXICON.items()
}


def attributes(text: str) -> frozenset[str]:
    """The timbre attributes a text names (English words or Chinese phrases)."""
    t = text.lower()
    found = set()
    for attr, patterns in _PATTERNS.items():
        for p in patterns:
            if (p.search(t) if isinstance(p, re.Pattern) else p in t):
                found.add(attr)
                break
    return frozenset(found)


def agreement(query: frozenset[str], voice: frozenset[str]) -> float:
    """Bonus for attributes the voice shares with the query, minus a penalty for contradicted ones."""
    if not query:
        return 0.0
    shared = len(query & voice)
    conflicts = sum(1 for q in query if any(o in voice for o in OPPOSITES.get(q, ())) and q not in voice)
    return (ATTRIBUTE_WEIGHT * shared - CONFLICT_WEIGHT * conflicts) / len(query)
