"""Which token2wav folder a cached voice prompt belongs to."""
from __future__ import annotations

import hashlib
from pathlib import Path

# The files a voice prompt's codes and speaker vector come from (the prompt mel needs none).
PROMPT_SOURCES = ("speech_tokenizer_v2_25hz.onnx", "campplus.onnx")
DEFAULT_PROMPT_KEY = "token2wav"


def prompt_key_for(folder: str | Path | None) -> str:
    """A cache name per token2wav folder, so prompts prepared with a fake checkpoint are
    never reused with the real one. Size + mtime of the source models, not their hash:
    hashing 500 MB at every start would cost seconds."""
    if folder is None:
        return DEFAULT_PROMPT_KEY
    folder = Path(folder)
    if not (folder / PROMPT_SOURCES[0]).exists() and (folder / "token2wav").is_dir():
        folder = folder / "token2wav"  # a checkpoint folder was given
    h = hashlib.sha1(str(folder.resolve()).encode())
    for name in PROMPT_SOURCES:
        try:
            st = (folder / name).stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{name}:missing".encode())
    return f"{DEFAULT_PROMPT_KEY}-{h.hexdigest()[:12]}"
