"""ASR sets in the layouts their publishers ship: LibriSpeech, AISHELL-1, Common Voice, FLEURS.

Each loader takes the folder the user unpacked (or the transcript file itself)
and returns a `Dataset` with items sorted by id, so runs, limits and resumes
see the same order.
"""
from __future__ import annotations

import csv
from pathlib import Path

from stepvoice.assistant.eval.items import Dataset, Item
from stepvoice.engine.errors import StepvoiceError

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg")
csv.field_size_limit(1 << 24)


def _find_audio(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def load_librispeech(path: Path) -> Dataset:
    """LibriSpeech: SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt ("ID TEXT" lines) beside ID.flac.
    `path` is a split folder (test-clean) or any folder above the transcripts."""
    transcripts = sorted(path.rglob("*.trans.txt"))
    if not transcripts:
        raise StepvoiceError(f"no LibriSpeech transcripts (*.trans.txt) under {path}")
    items: list[Item] = []
    for t in transcripts:
        for line_no, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            audio = _find_audio(t.parent, utt)
            if audio is None:
                raise StepvoiceError(f"{t}:{line_no}: no audio file for {utt} beside the transcript")
            items.append(Item(utt, (str(audio),), text.strip(), group=_split_name(t, path)))
    splits = sorted({i.group for i in items if i.group})
    if len(splits) == 1:
        return Dataset(f"LibriSpeech {splits[0]}", f"librispeech-{splits[0]}", "en",
                       tuple(sorted(items, key=lambda i: i.id)))
    # Several splits at once: one figure per split (wer/test-clean, wer/test-other) and the pooled one.
    return Dataset(f"LibriSpeech {', '.join(splits)}".strip(), "librispeech", "en",
                   tuple(sorted(items, key=lambda i: (i.group, i.id))))


def _split_name(transcript: Path, root: Path) -> str:
    """test-clean / test-other / dev-clean ..., from the folder names (speaker/chapter are digits)."""
    for part in reversed(transcript.relative_to(root).parts[:-1] if transcript.is_relative_to(root) else ()):
        if not part.isdigit():
            return part.lower()
    for part in reversed(root.resolve().parts):
        if not part.isdigit():
            return part.lower() if part.lower().startswith(("test", "dev", "train")) else ""
    return ""


def load_aishell(path: Path, split: str = "test") -> Dataset:
    """AISHELL-1 (data_aishell/): transcript/aishell_transcript_v0.8.txt ("ID 字 字 ..." lines) and
    wav/SPLIT/SPEAKER/ID.wav. `path` is data_aishell/ (or its parent, or the transcript file)."""
    if path.is_file():
        transcript, root = path, path.parent.parent
    else:
        found = sorted(path.rglob("aishell_transcript*.txt"))
        if not found:
            raise StepvoiceError(f"no AISHELL transcript (aishell_transcript*.txt) under {path}")
        transcript, root = found[0], found[0].parent.parent
    refs: dict[str, str] = {}
    for line in transcript.read_text(encoding="utf-8").splitlines():
        utt, _, text = line.strip().partition(" ")
        if utt:
            refs[utt] = text.strip()
    wav_root = root / "wav" / split
    if not wav_root.is_dir():
        wav_root = root / "wav"
    items = [Item(w.stem, (str(w),), refs[w.stem], group=split)
             for w in sorted(wav_root.rglob("*.wav")) if w.stem in refs]
    if not items:
        raise StepvoiceError(f"no AISHELL wav files with a transcript under {wav_root}")
    return Dataset(f"AISHELL-1 {split}", "aishell", "zh", tuple(sorted(items, key=lambda i: i.id)))


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def load_common_voice(path: Path, language: str | None = None) -> Dataset:
    """Common Voice: cv-corpus-*/LANG/test.tsv (columns path, sentence, ...) and LANG/clips/*.mp3.
    `path` is the language folder or the TSV file; the language comes from the folder name
    (en, zh-CN, yue, ...) unless --language says."""
    tsv = path if path.is_file() else path / "test.tsv"
    if not tsv.is_file():
        raise StepvoiceError(f"no Common Voice test.tsv in {path}")
    clips = tsv.parent / "clips"
    lang = (language or tsv.parent.name).strip()
    items: list[Item] = []
    for row in _read_tsv(tsv):
        if "path" not in row or "sentence" not in row:
            raise StepvoiceError(f"{tsv}: expected Common Voice columns 'path' and 'sentence'")
        audio = clips / row["path"]
        items.append(Item(Path(row["path"]).stem, (str(audio),), row["sentence"], group=lang))
    base = lang.split("-")[0].lower()
    return Dataset(f"Common Voice {lang}", f"commonvoice-{base}", base, tuple(sorted(items, key=lambda i: i.id)))


def load_fleurs(path: Path, language: str | None = None) -> Dataset:
    """FLEURS (google/fleurs): LANG/test.tsv without a header (id, file name, raw transcription,
    normalised transcription, ...) and LANG/audio/test/FILE.wav. `path` is the language folder
    (en_us, cmn_hans_cn, ...) or the TSV; the language is taken from that name unless --language says."""
    tsv = path if path.is_file() else path / "test.tsv"
    if not tsv.is_file():
        raise StepvoiceError(f"no FLEURS test.tsv in {path}")
    folder = tsv.parent
    audio_dirs = [folder / "audio" / "test", folder / "test", folder / "audio", folder]
    code = (language or _fleurs_language(folder.name)).lower()
    items: list[Item] = []
    with tsv.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if len(row) < 3:
                raise StepvoiceError(f"{tsv}:{n}: expected FLEURS columns id, file name, transcription")
            name = row[1]
            audio = next((d / name for d in audio_dirs if (d / name).is_file()), audio_dirs[0] / name)
            items.append(Item(f"{Path(name).stem}", (str(audio),), row[2], group=code))
    return Dataset(f"FLEURS {code}", f"fleurs-{code}", code, tuple(sorted(items, key=lambda i: i.id)))


def _fleurs_language(folder: str) -> str:
    """FLEURS folder names (en_us, cmn_hans_cn, ja_jp, ar_eg, yue_hant_hk) to language codes."""
    head = folder.lower().split("_")[0]
    return {"cmn": "zh", "yue": "yue"}.get(head, head)


def detect_asr_layout(path: Path) -> str:
    """librispeech, aishell, commonvoice or fleurs, from what the folder holds."""
    if path.is_file():
        if path.name.startswith("aishell_transcript"):
            return "aishell"
        with path.open(encoding="utf-8") as f:
            head = f.readline()
        return "commonvoice" if "sentence" in head.split("\t") else "fleurs"
    if next(path.rglob("*.trans.txt"), None) is not None:
        return "librispeech"
    if next(path.rglob("aishell_transcript*.txt"), None) is not None:
        return "aishell"
    tsv = path / "test.tsv"
    if tsv.is_file():
        with tsv.open(encoding="utf-8") as f:
            head = f.readline()
        return "commonvoice" if "sentence" in head.split("\t") else "fleurs"
    raise StepvoiceError(f"cannot tell the dataset layout of {path}: expected LibriSpeech (*.trans.txt), "
                         "AISHELL (aishell_transcript*.txt), Common Voice or FLEURS (test.tsv)")


def load_asr(path: Path, language: str | None = None) -> Dataset:
    layout = detect_asr_layout(path)
    if layout == "librispeech":
        return load_librispeech(path)
    if layout == "aishell":
        return load_aishell(path)
    if layout == "commonvoice":
        return load_common_voice(path, language)
    return load_fleurs(path, language)
