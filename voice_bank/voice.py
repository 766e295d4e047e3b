"""What a voice is: a reference clip plus words about it, as stored in the bank."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stepvoice.engine.errors import StepvoiceError

DEFAULT_VOICE = "default"  # the s3tokenizer wheel's Mandarin clip; always there
VOICE_FILE = "voice.json"
CLIP_FILE = "clip.wav"
_NAME = re.compile(r"^\w[\w.-]{0,63}$")  # a folder name on every OS: no slashes, no leading dot


class VoiceBankError(StepvoiceError):
    """A voice that cannot be added, found or used."""


class VoiceNotFound(VoiceBankError):
    pass


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise VoiceBankError(
            f"invalid voice name {name!r}: use 1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'"
        )
    return name


@dataclass
class Voice:
    name: str
    description: str
    clip: Path  # the bank's own copy, 16 kHz mono
    transcript: str | None = None
    tags: tuple[str, ...] = ()
    added: float = 0.0
    origin: str = "user"  # "user" or "starter"
    source: str | None = None  # where the clip came from (path or package resource)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clip"] = str(self.clip)
        d["tags"] = list(self.tags)
        return d

    def save(self, folder: Path) -> None:
        d = self.to_dict()
        d["clip"] = self.clip.name  # relative: the bank folder can move
        tmp = folder / (VOICE_FILE + ".tmp")
        tmp.write_text(json.dumps(d, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(folder / VOICE_FILE)

    @classmethod
    def load(cls, folder: Path) -> "Voice":
        try:
            d = json.loads((folder / VOICE_FILE).read_text(encoding="utf-8"))
            clip = d["clip"]
            # the clip is a file of the voice's own folder: a name, never a path out of it
            if not isinstance(clip, str) or Path(clip).name != clip or clip in ("", ".", ".."):
                raise ValueError(f"clip must be a file name inside the voice folder, not {clip!r}")
            d["clip"] = folder / clip
            d["tags"] = tuple(d.get("tags") or ())
            return cls(**d)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise VoiceBankError(f"voice folder {folder} is damaged ({type(e).__name__}: {e})") from None

    @property
    def search_text(self) -> str:
        """What the description index sees: the description plus tags."""
        return self.description + (f" ({', '.join(self.tags)})" if self.tags else "")


@dataclass(frozen=True)
class VoiceMatch:
    """A lookup result, as timbre_rag reads it."""

    name: str
    description: str
    score: float

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "score": round(self.score, 4)}
