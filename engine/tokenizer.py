"""The Step-Audio 2 tokenizer: a Qwen2 byte-level BPE plus Step's special tokens.

Every special id is READ from the checkpoint's tokenizer files
(`tokenizer.json`, `added_tokens.json`, `tokenizer_config.json`), never assumed,
so a checkpoint whose ids differ from the published ones still works and a
checkpoint that lacks one fails at load time with the token's name.

Only the `tokenizers` library is used at run time (fast to import); the same
files also load with `transformers.AutoTokenizer`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from stepvoice.engine.errors import CheckpointError

# Names of the tokens the engine needs (their ids come from the files).
BOT = "<|BOT|>"
EOT = "<|EOT|>"
AUDIO_START = "<audio_start>"
AUDIO_END = "<audio_end>"
AUDIO_PATCH = "<audio_patch>"
TTS_START = "<tts_start>"
TTS_END = "<tts_end>"
TTS_PAD = "<tts_pad>"
THINK_START = "<think>"
THINK_END = "</think>"
ENDOFTEXT = "<|endoftext|>"
N_SPEECH_CODES = 6561  # CosyVoice2 codes 0..6560; <audio_6561> is the pad


def audio_token(k: int) -> str:
    return f"<audio_{k}>"


REQUIRED_TOKENS = (BOT, EOT, AUDIO_START, AUDIO_END, AUDIO_PATCH, TTS_START, TTS_END, TTS_PAD)

# The Qwen2 pre-tokenizer split (same regex as Qwen2's tokenizer.json); used when a
# checkpoint ships vocab.json + merges.txt without a tokenizer.json.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def qwen2_tokenizer_json(vocab: dict[str, int], merges: list[str], added: list[dict]) -> dict:
    """A `tokenizers` JSON document for a Qwen2-style byte-level BPE.

    `added`: [{"id", "content", "special"}]. The added tokens are also written
    into the BPE vocab at their ids: `tokenizers` renumbers added tokens that the
    model vocab lacks, so this is what keeps ids with gaps (or after a short vocab) exact."""
    vocab = {**vocab, **{a["content"]: int(a["id"]) for a in added}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": int(a["id"]), "content": a["content"], "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": bool(a.get("special", True)),
            }
            for a in sorted(added, key=lambda a: int(a["id"]))
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab, "merges": merges,
        },
    }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


def _added_tokens_from_files(directory: Path) -> dict[str, tuple[int, bool]]:
    """content -> (id, special) from added_tokens.json and tokenizer_config.json."""
    found: dict[str, tuple[int, bool]] = {}
    config = directory / "tokenizer_config.json"
    if config.is_file():
        for key, entry in (_read_json(config).get("added_tokens_decoder") or {}).items():
            found[entry["content"]] = (int(key), bool(entry.get("special", True)))
    added = directory / "added_tokens.json"
    if added.is_file():
        for content, tid in _read_json(added).items():
            special = found.get(content, (0, True))[1]
            found[content] = (int(tid), special)
    return found


def _build_backend(directory: Path):
    from tokenizers import Tokenizer

    tj = directory / "tokenizer.json"
    added = _added_tokens_from_files(directory)
    if tj.is_file():
        try:
            doc = json.loads(tj.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read {tj}: {e}") from None
        known = {a["content"] for a in doc.get("added_tokens", [])}
        extra = [
            {"id": tid, "content": c, "special": sp} for c, (tid, sp) in added.items() if c not in known
        ]
        if extra:  # tokens listed only in added_tokens.json: add them at their ids
            patch = qwen2_tokenizer_json({}, [], extra)
            doc["added_tokens"] = doc.get("added_tokens", []) + patch["added_tokens"]
            if isinstance(doc.get("model", {}).get("vocab"), dict):
                doc["model"]["vocab"].update(patch["model"]["vocab"])
        try:
            return Tokenizer.from_str(json.dumps(doc))
        except Exception as e:  # the library raises a bare Exception on bad JSON
            raise CheckpointError(f"cannot load {tj}: {e}") from None
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    for f in (vocab_file, merges_file):
        if not f.is_file():
            raise CheckpointError(f"tokenizer files missing in {directory}: need tokenizer.json or vocab.json + merges.txt")
    vocab = _read_json(vocab_file)
    merges = [
        line for line in merges_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#version")
    ]
    added_list = [{"id": tid, "content": c, "special": sp} for c, (tid, sp) in added.items()]
    try:
        return Tokenizer.from_str(json.dumps(qwen2_tokenizer_json(vocab, merges, added_list)))
    except Exception as e:
        raise CheckpointError(f"cannot build the tokenizer from {vocab_file} and {merges_file}: {e}") from None


@dataclass(frozen=True)
class _Ids:
    bot: int
    eot: int
    audio_start: int
    audio_end: int
    audio_patch: int
    tts_start: int
    tts_end: int
    tts_pad: int
    audio_first: int
    audio_pad: int


class StepTokenizer:
    """Text <-> ids, plus the special ids of the Step-Audio 2 chat format.

    Attributes: `bot_id eot_id audio_start_id audio_end_id audio_patch_id
    tts_start_id tts_end_id tts_pad_id audio_first_id audio_pad_id`, and
    `think_start_id` / `think_end_id` / `endoftext_id` (None when absent).
    """

    def __init__(self, backend, source: str = "") -> None:
        self._tok = backend
        self.source = source
        self._id_limit: int | None = None
        ids = {}
        for name in REQUIRED_TOKENS + (audio_token(0), audio_token(N_SPEECH_CODES)):
            tid = backend.token_to_id(name)
            if tid is None:
                raise CheckpointError(f"tokenizer{' in ' + source if source else ''} lacks the special token {name}")
            ids[name] = tid
        first = ids[audio_token(0)]
        # Speech codes are decoded as `id - audio_first_id`: the block must be contiguous.
        for k in range(N_SPEECH_CODES + 1):
            if backend.token_to_id(audio_token(k)) != first + k:
                raise CheckpointError(
                    f"tokenizer{' in ' + source if source else ''}: {audio_token(k)} is not at id {first + k}; "
                    "speech tokens must be contiguous"
                )
        self.bot_id = ids[BOT]
        self.eot_id = ids[EOT]
        self.audio_start_id = ids[AUDIO_START]
        self.audio_end_id = ids[AUDIO_END]
        self.audio_patch_id = ids[AUDIO_PATCH]
        self.tts_start_id = ids[TTS_START]
        self.tts_end_id = ids[TTS_END]
        self.tts_pad_id = ids[TTS_PAD]
        self.audio_first_id = first
        self.audio_pad_id = ids[audio_token(N_SPEECH_CODES)]
        self.think_start_id: int | None = backend.token_to_id(THINK_START)
        self.think_end_id: int | None = backend.token_to_id(THINK_END)
        self.endoftext_id: int | None = backend.token_to_id(ENDOFTEXT)
        # Ids below <audio_start> are text (the official code's `< 151688` rule, read from the files).
        self.text_limit = self.audio_start_id
        self._control = {
            self.bot_id, self.eot_id, self.audio_start_id, self.audio_end_id, self.audio_patch_id,
            self.tts_start_id, self.tts_end_id, self.tts_pad_id,
        }
        if self.endoftext_id is not None:
            self._control.add(self.endoftext_id)

    # ---- text --------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids of `text`; special-token strings inside it (e.g. "<|BOT|>") become their ids.
        No BOS/EOS is added (Qwen2 adds none)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, special tokens written out (e.g. "<tts_end>")."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def decode_text(self, ids: Iterable[int]) -> str:
        """Text of the text ids only (speech codes, pads and control tokens left out)."""
        return self.decode(i for i in ids if self.is_text(i))

    def id_of(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def token_of(self, token_id: int) -> str | None:
        return self._tok.id_to_token(int(token_id))

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (the embedding rows the ids need)."""
        if self._id_limit is None:
            self._id_limit = max(self._tok.get_vocab(with_added_tokens=True).values()) + 1
        return self._id_limit

    # ---- classes of ids ----------------------------------------------------------
    def is_text(self, token_id: int) -> bool:
        """True for ordinary text ids (not BOT/EOT/endoftext, not audio or TTS control)."""
        return token_id < self.text_limit and token_id not in self._control

    def is_control(self, token_id: int) -> bool:
        return token_id in self._control

    def code_of(self, token_id: int) -> int | None:
        """The speech code 0..6560 of an `<audio_k>` id; None for the pad and for non-speech ids."""
        k = token_id - self.audio_first_id
        return k if 0 <= k < N_SPEECH_CODES else None

    def id_of_code(self, code: int) -> int:
        if not 0 <= code < N_SPEECH_CODES:
            raise ValueError(f"speech code {code} outside 0..{N_SPEECH_CODES - 1}")
        return self.audio_first_id + code

    def ids_of_codes(self, codes: Sequence[int]) -> list[int]:
        return [self.id_of_code(int(c)) for c in codes]

    def __repr__(self) -> str:
        return f"StepTokenizer({self.source!r}, vocab={self.vocab_size})"


def load_tokenizer(checkpoint_dir: str | Path) -> StepTokenizer:
    """Load the tokenizer of a checkpoint folder; CheckpointError names what is missing."""
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {directory}")
    return StepTokenizer(_build_backend(directory), source=str(directory))


def write_fake_tokenizer(directory: str | Path, think_tokens: bool = False) -> None:
    """Write small Qwen2-style tokenizer files with every Step-Audio 2 special token at its real id.
    `think_tokens`: `<think>`/`</think>` as single tokens (default: ordinary text, like the real one)."""
    from stepvoice.engine.tokenizer_fake import write_fake_tokenizer as _write

    _write(Path(directory), think_tokens)


__all__ = [
    "StepTokenizer", "load_tokenizer", "write_fake_tokenizer", "audio_token", "N_SPEECH_CODES",
    "BOT", "EOT", "AUDIO_START", "AUDIO_END", "AUDIO_PATCH", "TTS_START", "TTS_END", "TTS_PAD",
    "THINK_START", "THINK_END",
]
