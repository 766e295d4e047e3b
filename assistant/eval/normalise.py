"""Text normalisation before scoring, so WER/CER measure recognition, not formatting.

English (`normalise_en`): Whisper-style. The Step-Audio 2 report compares its
English WERs with Whisper-family and GPT-4o systems, whose published numbers
use OpenAI's Whisper English normaliser; LibriSpeech references are upper case
with spelled-out numbers while the model writes "Mr. Smith paid $20."; without
these rules formatting alone costs several points of WER. The rules (our own
implementation, written from the behaviour, applied identically to reference
and hypothesis; tests/test_eval_scorers.py checks that it scores a set of
pairs exactly as the `whisper-normalizer` package does):

 1. Unicode NFKC, lower case; diacritics dropped ("café" -> "cafe").
 2. Bracketed asides removed: "[noise]", "(laughs)", "<unk>".
 3. Contractions expanded: won't -> will not, can't -> can not, n't -> not,
    're -> are, 'll -> will, 've -> have, 'm -> am, 'd -> would, 's -> is
    (as Whisper's, also for possessives: both sides alike); other apostrophes
    dropped.
 4. Hesitations dropped: uh, um, umm, hmm, mm, mhm, er, ah, eh; spoken forms
    spelled out: gonna -> going to, wanna -> want to, kinda -> kind of, ...
 5. Titles spelled out: mr -> mister, mrs -> missus, dr -> doctor,
    st -> saint, prof -> professor, jr -> junior, ...
 6. Numbers as digits: "twenty one" -> "21", "two thousand and five" ->
    "2005", "a hundred" -> "a 100", "three point five" -> "3.5", "1,000" ->
    "1000", "5 million" -> "5000000", "twenty first" -> "21st", "nineties" -> "90s"; consecutive
    numbers are read as one ("nineteen ninety" -> "1990", "five six" -> "56");
    a lone "one" stays a word ("no one"); "fifty percent" -> "50%",
    "twenty dollars" -> "$20", "twenty dollars and five cents" -> "$20.05".
 7. A few British spellings made American (colour -> color, ...; Whisper
    ships a list of ~1700, this keeps the common ones).
 8. Other punctuation and symbols become spaces ($ and % stay on numbers);
    whitespace collapsed.

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
    (re.compile(r"'d\b"), " would"),
    (re.compile(r"'s\b"), " is"),
]
_INFORMAL = {  # spoken forms written as such
    "gonna": "going to", "wanna": "want to", "gotta": "got to", "kinda": "kind of", "sorta": "sort of",
    "dunno": "do not know", "coulda": "could have", "shoulda": "should have", "woulda": "would have",
    "cause": "because", "yall": "you all", "maam": "madam",
}
_HESITATIONS = {"uh", "um", "umm", "uhm", "hmm", "hm", "mm", "mhm", "er", "erm", "ah", "eh"}
_TITLES = {
    "mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "prof": "professor", "jr": "junior",
    "sr": "senior", "capt": "captain", "gen": "general", "lt": "lieutenant", "col": "colonel", "rev": "reverend",
    "sen": "senator", "gov": "governor", "rep": "representative", "pres": "president", "esq": "esquire",
}
_BRITISH = {
    "colour": "color", "colours": "colors", "favourite": "favorite", "honour": "honor", "honours": "honors",
    "neighbour": "neighbor", "neighbours": "neighbors", "labour": "labor", "behaviour": "behavior",
    "centre": "center", "centres": "centers", "theatre": "theater", "metre": "meter", "metres": "meters",
    "realise": "realize", "realised": "realized", "organise": "organize", "organised": "organized",
    "grey": "gray", "travelled": "traveled", "travelling": "traveling", "defence": "defense",
    "harbour": "harbor", "humour": "humor", "rumour": "rumor", "armour": "armor", "flavour": "flavor",
}

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_TENS_PLURAL = {w + "s": v for w, v in ((w[:-1] + "ie", v) for w, v in _TENS.items())}  # twenties .. nineties
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "sixtieth": 60, "seventieth": 70,
    "eightieth": 80, "ninetieth": 90, "hundredth": 100, "thousandth": 1000,
}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES) | set(_TENS_PLURAL)


def _suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _take_number(tokens: list[str], i: int) -> tuple[str, int] | None:
    """One number spelled out from tokens[i] on, as digits, and the index after it (None: not a number).

    A small state machine says where one number ends: "twenty one" is 21 and "two hundred and five"
    is 205, but in "five six" or "nineteen ninety" a second number starts at the second word."""
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
        elif w in _TENS or w in _TENS_PLURAL:
            if last in ("unit", "teen", "tens"):
                break
            if w in _TENS_PLURAL:  # "nineties" -> 90s
                return f"{total + current + _TENS_PLURAL[w]}s", j + 1
            current += _TENS[w]
            kind = "tens"
        elif w == "hundred":
            if last in ("tens", "hundred") or current >= 100:
                break
            current = (current or 1) * 100  # "a hundred" is 100
            kind = "hundred"
        elif w in _SCALES:
            if last == "scale":
                break
            total += (current or 1) * _SCALES[w]
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


def _starts_number(token: str) -> bool:
    return token in _NUMBER_WORDS or token in _ORDINALS


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if _NUMBER.match(tokens[i]) and i + 1 < len(tokens) and tokens[i + 1] in _SCALES:
            value = float(tokens[i]) * _SCALES[tokens[i + 1]]  # "5 million" -> 5000000, "1.5 billion"
            out.append(str(int(value)) if value.is_integer() else f"{value:g}")
            i += 2
            continue
        taken = _take_number(tokens, i) if _starts_number(tokens[i]) else None
        if taken is None:
            out.append(tokens[i])
            i += 1
            continue
        digits, j = taken
        # Numbers said one after another are one figure: "nineteen ninety" 1990, "five six" 56.
        while digits.isdigit() and j < len(tokens) and tokens[j] in _NUMBER_WORDS:
            more = _take_number(tokens, j)
            if more is None:
                break
            digits, j = digits + more[0], more[1]
        out.append("one" if (tokens[i] == "one" and j == i + 1) else digits)  # "no one" stays words
        i = j
    return _money_and_percent(out)


_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def _money_and_percent(tokens: list[str]) -> list[str]:
    """20 percent -> 20%, 20 dollars -> $20, 20 dollars and 5 cents -> $20.05, $ 20 -> $20, 50 % -> 50%."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if _NUMBER.match(t) and nxt in ("percent", "%"):
            out.append(t + "%")
            i += 2
        elif _NUMBER.match(t) and nxt in ("dollars", "dollar"):
            if (i + 4 < len(tokens) and tokens[i + 2] == "and" and tokens[i + 3].isdigit()
                    and tokens[i + 4] in ("cents", "cent") and "." not in t):
                out.append(f"${t}.{int(tokens[i + 3]):02d}")
                i += 5
            else:
                out.append("$" + t)
                i += 2
        elif t == "$" and _NUMBER.match(nxt):
            out.append("$" + nxt)
            i += 2
        else:
            out.append(t)
            i += 1
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
    s = re.sub(r"\.(?!\d)|(?<!\d)\.", " ", s)  # keep decimal points only
    s = s.replace("'", "")
    s = re.sub(r"[^\w\s.$%]", " ", s)
    s = re.sub(r"([$%])", r" \1 ", s).replace("_", " ")  # "$20" and "50%" are rebuilt from the parts
    tokens = [w for t in s.split() if t not in _HESITATIONS for w in _INFORMAL.get(t, t).split()]
    tokens = [_TITLES.get(t, t) for t in tokens]
    tokens = [_BRITISH.get(t, t) for t in tokens]
    return " ".join(_numbers_to_digits(tokens))


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
