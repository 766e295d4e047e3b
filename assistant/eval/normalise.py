"""Text normalisation before scoring, so WER/CER measure recognition, not formatting.

English (`normalise_en`): Whisper-style. The Step-Audio 2 report compares its
English WERs with Whisper-family and GPT-4o systems, whose published numbers
use OpenAI's Whisper English normaliser; LibriSpeech references are upper case
with spelled-out numbers while the model writes "Mr. Smith paid $20."; without
these rules formatting alone costs several points of WER. The rules (our own
implementation, applied identically to reference and hypothesis):

 1. Unicode NFKC, lower case; diacritics dropped ("café" -> "cafe").
 2. Bracketed asides removed: "[noise]", "(laughs)", "<unk>".
 3. Contractions expanded: won't -> will not, can't -> can not, n't -> not,
    're -> are, 'll -> will, 've -> have, 'm -> am; other apostrophes dropped
    ("john's" -> "johns").
 4. Hesitations dropped: uh, um, umm, hmm, mm, mhm, er, ah, eh.
 5. Titles standardised: mr/mrs/ms/dr/st ("mister" -> "mr", "doctor" stays).
 6. Numbers as digits: "twenty one" -> "21", "two thousand and five" -> "2005",
    "three point five" -> "3.5", "1,000" -> "1000", "first"/"twenty first" ->
    "1st"/"21st"; "%" -> " percent"; "$" -> " dollars" after the number.
 7. A few British spellings made American (colour -> color, ...).
 8. Other punctuation and symbols become spaces; whitespace collapsed.

Chinese (`normalise_zh`): CER on characters. NFKC (full-width letters, digits
and ASCII-range punctuation become half-width), every Unicode punctuation or
symbol character removed (this includes the CJK marks NFKC keeps: 。、《》“”
「」), all whitespace removed, Latin lower-cased. Digits are not converted to
Chinese numerals (nor back): AISHELL references write numbers in characters
and the model does too.
"""
from __future__ import annotations

import re
import unicodedata

# --- English ------------------------------------------------------------------------------

_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|\{[^}]*\}")
_CONTRACTIONS = [
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bcannot\b"), "can not"),
    (re.compile(r"\bain't\b"), "is not"),
    (re.compile(r"\blet's\b"), "let us"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'m\b"), " am"),
]
_HESITATIONS = {"uh", "um", "umm", "uhm", "hmm", "hm", "mm", "mhm", "er", "erm", "ah", "eh"}
_TITLES = {"mister": "mr", "missus": "mrs", "saint": "st"}
_BRITISH = {
    "colour": "color", "colours": "colors", "favourite": "favorite", "honour": "honor", "honours": "honors",
    "neighbour": "neighbor", "neighbours": "neighbors", "labour": "labor", "behaviour": "behavior",
    "centre": "center", "centres": "centers", "theatre": "theater", "metre": "meter", "metres": "meters",
    "realise": "realize", "realised": "realized", "organise": "organize", "organised": "organized",
    "grey": "gray", "travelled": "traveled", "travelling": "traveling", "defence": "defense",
}

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "sixtieth": 60, "seventieth": 70,
    "eightieth": 80, "ninetieth": 90, "hundredth": 100, "thousandth": 1000,
}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES)


def _suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _take_number(tokens: list[str], i: int) -> tuple[str, int] | None:
    """The longest number spelled out from tokens[i] on, as digits, and the index after it (None: not a number).

    A small state machine keeps separate numbers apart: "five six" is 5 6, "nineteen ninety" is 19 90,
    "two hundred and five" is 205, "twenty first" is 21st, "three point one four" is 3.14."""
    total = current = 0
    last = ""  # kind of the previous word: unit, teen, tens, hundred, scale
    j = i
    end = i  # index after the last word that belongs to the number
    while j < len(tokens):
        w = tokens[j]
        if w in _UNITS:
            v = _UNITS[w]
            kind = "unit" if v < 10 else "teen"
            if last in ("unit", "teen") or (last == "tens" and kind == "teen"):
                break
            current += v
        elif w in _TENS:
            if last in ("unit", "teen", "tens"):
                break
            current += _TENS[w]
            kind = "tens"
        elif w == "hundred":
            if last not in ("unit", "teen") or current >= 100:
                break
            current *= 100
            kind = "hundred"
        elif w in _SCALES:
            if not last or last == "scale" or current == 0:
                break
            total += current * _SCALES[w]
            current = 0
            kind = "scale"
        elif w == "and" and last in ("hundred", "scale") and j + 1 < len(tokens) and (
                tokens[j + 1] in _UNITS or tokens[j + 1] in _TENS):
            j += 1
            continue
        elif w in _ORDINALS and (last in ("", "tens", "hundred", "scale")
                                 or (last in ("unit", "teen") and _ORDINALS[w] >= 100)):
            base = _ORDINALS[w]
            if last == "tens" and base >= 10:
                break
            value = total + current
            value = value * base if base >= 100 and value else value + base
            return f"{value}{_suffix(value)}", j + 1
        else:
            break
        last = kind
        j += 1
        end = j
    if end == i:
        return None
    value = total + current
    # "three point one four" -> 3.14 (only single digits after "point")
    if end + 1 < len(tokens) and tokens[end] == "point" and tokens[end + 1] in _UNITS \
            and _UNITS[tokens[end + 1]] < 10:
        k = end + 1
        digits = []
        while k < len(tokens) and tokens[k] in _UNITS and _UNITS[tokens[k]] < 10:
            digits.append(str(_UNITS[tokens[k]]))
            k += 1
        return f"{value}.{''.join(digits)}", k
    return str(value), end


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        taken = _take_number(tokens, i) if tokens[i] in _NUMBER_WORDS or tokens[i] in _ORDINALS else None
        if taken is None:
            out.append(tokens[i])
            i += 1
        else:
            out.append(taken[0])
            i = taken[1]
    return out


def normalise_en(text: str) -> str:
    """English text as scored (rules in the module docstring)."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = s.replace("\u2019", "'").replace("\u2018", "'")
    s = _BRACKETS.sub(" ", s)
    for pattern, repl in _CONTRACTIONS:
        s = pattern.sub(repl, s)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 1,000 -> 1000
    s = re.sub(r"\$\s*(\d+(?:\.\d+)?)", r"\1 dollars", s)
    s = s.replace("%", " percent ")
    s = re.sub(r"\.(?!\d)|(?<!\d)\.", " ", s)  # keep decimal points only
    s = s.replace("'", "")
    s = re.sub(r"[^\w\s.]", " ", s)
    s = s.replace("_", " ")
    tokens = [_TITLES.get(t, t) for t in s.split() if t not in _HESITATIONS]
    tokens = [_BRITISH.get(t, t) for t in tokens]
    tokens = _numbers_to_digits(tokens)
    return " ".join(tokens)


# --- Chinese ------------------------------------------------------------------------------

def normalise_zh(text: str) -> str:
    """Chinese text as scored for CER: no punctuation (half- or full-width), no spaces, Latin lower-cased."""
    s = unicodedata.normalize("NFKC", text).lower()
    return "".join(c for c in s if not c.isspace() and unicodedata.category(c)[0] not in "PS")


def normalise(text: str, language: str) -> str:
    """The normaliser for `language` (en, zh; others: the Chinese rules for CJK languages, else English)."""
    lang = (language or "en").lower().split("-")[0]
    if lang in ("zh", "yue", "ja", "cmn"):
        return normalise_zh(text)
    return normalise_en(text)


def uses_cer(language: str) -> bool:
    """Character error rate for Chinese, Cantonese and Japanese (as the published table), WER otherwise."""
    return (language or "en").lower().split("-")[0] in ("zh", "yue", "ja", "cmn")
