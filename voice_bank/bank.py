"""The voice bank: reference voices on disk, found by description, by example clip or by name.

Layout under DATA/voices:
  <name>/voice.json, <name>/clip.wav   one folder per voice (written to a temp folder, then renamed)
  <name>/prompt-<key>.npz              the prepared token2wav VoicePrompt, computed once
  .index/                              description vectors (text store) and speaker vectors
                                       (audio store), kept apart from the document index so
                                       retrieval-augmented answers never quote voice entries

A switch of voice is `prompt(name)`: a dict lookup after the first use, an
.npz read after a restart, and a token2wav preparation only the first time.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf

from stepvoice.engine.errors import AudioError, ConfigError
from stepvoice.retrieval import Retriever
from stepvoice.retrieval.store import StoreConfig
from stepvoice.voice_bank.attributes import agreement, attributes
from stepvoice.voice_bank.starter import starter_voices
from stepvoice.voice_bank.voice import CLIP_FILE, DEFAULT_VOICE, VOICE_FILE, Voice, VoiceBankError, VoiceMatch, VoiceNotFound, check_name

log = logging.getLogger(__name__)

MIN_CLIP_S = 1.0  # token2wav needs >= 1 s of reference
MAX_CLIP_S = 60.0  # longer input is refused (a reference clip, not a recording)
KEEP_CLIP_S = 30.0  # and trimmed to the speech tokenizer's limit
STARTER_MARK = ".starter-v1"
SAMPLE_RATE = 16000


def _load_prompt(path: Path) -> Any:
    try:
        from stepvoice.engine.token2wav import VoicePrompt  # the contract's home
    except ImportError:
        from stepvoice.engine.token2wav.voice import VoicePrompt
    return VoicePrompt.load(path)


class VoiceBank:
    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        prepare: Callable[[np.ndarray], Any] | None = None,
        prompt_key: str = "token2wav",
        text_embedder: Any = None,
        speaker_embedder: Any = None,
        checkpoint: str | os.PathLike | None = None,
        starter: bool = True,
        load_prompt: Callable[[Path], Any] = _load_prompt,
    ) -> None:
        self.root = Path(data_dir) / "voices"
        self.root.mkdir(parents=True, exist_ok=True)
        self.prepare = prepare
        self.prompt_key = check_name(prompt_key)
        self._load_prompt = load_prompt
        self.index = Retriever(self.root, text_embedder=text_embedder, speaker_embedder=speaker_embedder,
                               checkpoint=checkpoint, index_dir=self.root / ".index",
                               store_config=StoreConfig(approx_threshold=1_000_000))  # banks stay small: exact
        self._prompts: dict[str, Any] = {}  # name -> VoicePrompt, this bank's in-memory cache
        self._reconciled: set[str] = set()  # stores checked against the voice folders
        self._lock = threading.RLock()
        if starter and not (self.root / STARTER_MARK).exists():
            self.install_starter()

    @classmethod
    def open(cls, data_dir: str | os.PathLike, prepare: Callable[[np.ndarray], Any] | None = None, **kwargs) -> "VoiceBank":
        return cls(data_dir, prepare=prepare, **kwargs)

    # ----- adding and removing ---------------------------------------------------------
    def add(self, wav: "str | os.PathLike | bytes | np.ndarray", name: str, description: str,
            transcript: str | None = None, tags: tuple[str, ...] | list[str] = (), *,
            replace: bool = False, origin: str = "user", source: str | None = None, extra: dict | None = None) -> Voice:
        """Copy a reference clip into the bank and index its description and speaker vector.

        Everything is checked and embedded before anything is written; the
        voice folder appears atomically (temp folder + rename).
        """
        from stepvoice.engine.audio import load_audio

        name = check_name(name)
        description = " ".join((description or "").split())
        if not description:
            raise VoiceBankError("a voice needs a description of its timbre (e.g. 'a deep calm male voice')")
        tags = tuple(t.strip() for t in tags if t and t.strip())
        with self._lock:
            existing = self._find_folder(name)
            if existing is not None and not replace:
                raise VoiceBankError(f"a voice named {existing.name!r} already exists (remove it first, or pick another name)")
            if existing is not None and existing.name == DEFAULT_VOICE and origin != "starter":
                raise VoiceBankError(f"{DEFAULT_VOICE!r} is the built-in voice; give your voice another name")
            if isinstance(wav, (str, os.PathLike)) and Path(wav).is_file():
                try:  # refuse hour-long files from their header, before decoding them
                    header_s = sf.info(str(wav)).duration
                except Exception:
                    header_s = 0.0  # not a format soundfile knows: load_audio says why
                if header_s > MAX_CLIP_S:
                    raise VoiceBankError(f"the clip is {header_s:.0f} s long; use a 3-30 s reference clip "
                                         f"(at most {MAX_CLIP_S:.0f} s)")
            samples = load_audio(wav) if not isinstance(wav, np.ndarray) else load_audio(wav, SAMPLE_RATE)
            seconds = len(samples) / SAMPLE_RATE
            if seconds < MIN_CLIP_S:
                raise VoiceBankError(f"the clip is {seconds:.2f} s long; a reference voice needs at least {MIN_CLIP_S:.0f} s of speech")
            if seconds > MAX_CLIP_S:
                raise VoiceBankError(f"the clip is {seconds:.0f} s long; use a 3-30 s reference clip (at most {MAX_CLIP_S:.0f} s)")
            samples = samples[: int(KEEP_CLIP_S * SAMPLE_RATE)]
            if float(np.sqrt(np.mean(samples**2))) < 1e-3:
                raise VoiceBankError("the clip is silent or nearly so; record the voice speaking")
            voice = Voice(name, description, self.root / name / CLIP_FILE, (transcript or "").strip() or None, tags,
                          time.time(), origin, source or (str(wav) if isinstance(wav, (str, os.PathLike)) else None),
                          extra or {})
            # embed first: a failure here leaves the bank as it was
            speaker = self.index.speaker_embedder.embed(samples)
            text_vec = self.index.text_embedder.embed([voice.search_text])
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=self.root))
            try:
                sf.write(str(tmp / CLIP_FILE), samples, SAMPLE_RATE, subtype="FLOAT")
                voice.save(tmp)
                if existing is not None:  # the old voice goes only once the new one is complete
                    self.remove(existing.name, _allow_default=True)
                try:
                    tmp.rename(self.root / name)
                except OSError:  # another process created it since our check
                    raise VoiceBankError(f"a voice named {name!r} was just added by another process") from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            try:
                self._index_voice(voice, speaker, text_vec)
            except BaseException:
                shutil.rmtree(self.root / name, ignore_errors=True)
                raise
            return voice

    # ----- the bank's two indexes (derived from the voice folders) ----------------------
    def _text_store(self):
        try:
            return self.index.text_store
        except ConfigError:  # built with another text embedder: it is derived data, so rebuild it
            for f in (self.root / ".index").glob("text.*"):
                f.unlink()
            self._reconciled.discard("text")
            return self.index.text_store

    def _store(self, which: str):
        store = self._text_store() if which == "text" else self.index.audio_store
        if which not in self._reconciled:
            self._reconciled.add(which)
            self._reconcile(store, which)
        return store

    def _reconcile(self, store, which: str) -> None:
        """One row per voice folder: index voices a crash (or another embedder) left out, drop strays."""
        from stepvoice.engine.audio import load_audio

        indexed = {r.source.removeprefix("voice:"): r for r in store.rows_where(kind="voice")}
        voices = {v.name: v for v in self.list()}
        for name in set(indexed) - set(voices):
            store.remove(source=f"voice:{name}")
        for name, voice in voices.items():
            row = indexed.get(name)
            if row is not None and (which == "audio" or row.text == voice.search_text):
                continue
            log.info("indexing voice %s (%s index)", name, which)
            if which == "text":
                self._add_rows(voice, text_vec=self.index.text_embedder.embed([voice.search_text]))
            else:
                self._add_rows(voice, speaker=self.index.speaker_embedder.embed(load_audio(voice.clip)))

    def _add_rows(self, voice: Voice, *, speaker: np.ndarray | None = None, text_vec: np.ndarray | None = None) -> None:
        from stepvoice.retrieval.ingest import item_hash
        from stepvoice.retrieval.store import NewItem

        src = f"voice:{voice.name}"
        digest = item_hash("voice", src, f"{voice.search_text}\0{voice.added}")
        if text_vec is not None:
            self._text_store().add([NewItem("voice", src, digest, voice.search_text, str(voice.clip), digest)],
                                   text_vec, replace_source=src)
        if speaker is not None:
            self.index.audio_store.add([NewItem("voice", src, digest, voice.transcript or "", str(voice.clip), digest)],
                                       speaker[None], replace_source=src)

    def _index_voice(self, voice: Voice, speaker: np.ndarray, text_vec: np.ndarray) -> None:
        self._add_rows(voice, speaker=speaker, text_vec=text_vec)

    def remove(self, name: str, *, _allow_default: bool = False) -> None:
        with self._lock:
            folder = self._find_folder(name)
            if folder is None:
                raise self._not_found(name)
            if folder.name == DEFAULT_VOICE and not _allow_default:
                raise VoiceBankError(f"{DEFAULT_VOICE!r} is the built-in voice and cannot be removed")
            src = f"voice:{folder.name}"
            self._text_store().remove(source=src)
            self.index.audio_store.remove(source=src)
            trash = self.root / f".trash-{folder.name}-{os.getpid()}-{time.monotonic_ns()}"
            folder.rename(trash)  # atomic: the voice is gone at once, the files follow
            shutil.rmtree(trash, ignore_errors=True)
            self._prompts.pop(folder.name, None)

    def install_starter(self) -> list[str]:
        """Add the starter voices that are missing (see voice_bank.starter); returns their names."""
        added = []
        with self._lock:
            for s in starter_voices():
                if self._find_folder(s.name) is not None:
                    continue
                try:
                    self.add(s.load(), s.name, s.description, s.transcript, s.tags, origin="starter",
                             source=s.source, extra={"derived": True} if s.derived else None)
                    added.append(s.name)
                except (AudioError, VoiceBankError, OSError) as e:
                    log.warning("starter voice %s not installed: %s", s.name, e)
            (self.root / STARTER_MARK).write_text("starter voices installed once; removed ones stay removed\n")
        return added

    # ----- lookups ---------------------------------------------------------------------
    def _find_folder(self, name: str) -> Path | None:
        """The folder of `name`, matched exactly or ignoring case; never a folder outside the bank.

        Every lookup (get, rm, prompt, ask --voice) comes through here: the name must be a
        voice name (no slashes, no `..`, not absolute) and the folder, links resolved, must
        be a direct child of the bank."""
        try:
            name = check_name(name)
        except VoiceBankError:
            return None
        exact = self.root / name
        if (exact / VOICE_FILE).is_file():
            return exact if self._inside(exact) else None
        lower = name.lower()
        for folder in self.root.iterdir():
            if folder.name.lower() == lower and (folder / VOICE_FILE).is_file():
                return folder if self._inside(folder) else None
        return None

    def _inside(self, folder: Path) -> bool:
        """True when `folder` (links resolved) is a direct child of the bank's folder."""
        try:
            return folder.resolve().parent == self.root.resolve()
        except OSError:
            return False

    def _not_found(self, name: str) -> VoiceNotFound:
        names = ", ".join(v.name for v in self.list()) or "none"
        return VoiceNotFound(f"no voice named {name!r} (voices: {names})")

    def get(self, name: str) -> Voice:
        folder = self._find_folder(name)
        if folder is None:
            raise self._not_found(name)
        return Voice.load(folder)

    def __contains__(self, name: str) -> bool:
        return self._find_folder(name) is not None

    def list(self) -> list[Voice]:
        voices = []
        for folder in sorted(self.root.iterdir()):
            if not folder.name.startswith(".") and (folder / VOICE_FILE).is_file():
                try:
                    voices.append(Voice.load(folder))
                except VoiceBankError as e:
                    log.warning("%s", e)
        voices.sort(key=lambda v: (v.name != DEFAULT_VOICE, v.origin != "starter", v.name))
        return voices

    def search(self, query: str, k: int = 5) -> list[VoiceMatch]:
        """Voices ranked by how well their description fits `query` (any language).

        Score = description embedding similarity + timbre attribute agreement
        (see voice_bank.attributes: shared words like deep/低沉 across languages).
        """
        if not query or not query.strip():
            return []
        n = self._store("text").count(kind="voice")
        hits = self.index.search(query, k=max(k, n), kind="voice")
        wanted = attributes(query)
        matches = self._matches(hits)
        rescored = [VoiceMatch(m.name, m.description, m.score + agreement(wanted, attributes(self.get(m.name).search_text)))
                    for m in matches]
        return sorted(rescored, key=lambda m: -m.score)[:k]

    def search_like(self, wav: "str | os.PathLike | bytes | np.ndarray", k: int = 5) -> list[VoiceMatch]:
        """Voices ranked by how close their speaker vector is to the clip's."""
        from stepvoice.engine.audio import load_audio

        samples = load_audio(wav) if not isinstance(wav, np.ndarray) else load_audio(wav, SAMPLE_RATE)
        self._store("audio")
        return self._matches(self.index.search_audio(samples, k=k, kind="voice"))

    def find(self, query: str) -> VoiceMatch | None:
        """The voice whose description best fits `query` (None if the bank is empty)."""
        found = self.search(query, k=1)
        return found[0] if found else None

    def find_like(self, wav: "str | os.PathLike | bytes | np.ndarray") -> VoiceMatch | None:
        found = self.search_like(wav, k=1)
        return found[0] if found else None

    def _matches(self, hits) -> list[VoiceMatch]:
        out = []
        for h in hits:
            name = h.source.removeprefix("voice:")
            folder = self._find_folder(name)
            if folder is None:  # index row of a voice whose folder went away: skip it
                continue
            out.append(VoiceMatch(folder.name, Voice.load(folder).description, float(h.score)))
        return out

    # ----- prompts ---------------------------------------------------------------------
    def prompt_path(self, name: str) -> Path:
        return self.get(name).clip.parent / f"prompt-{self.prompt_key}.npz"

    def prompt(self, name: str) -> Any:
        """The voice's prepared token2wav VoicePrompt: memory, else disk, else `prepare` (then cached)."""
        with self._lock:
            cached = self._prompts.get(name)
            if cached is not None:
                return cached
            voice = self.get(name)
            path = voice.clip.parent / f"prompt-{self.prompt_key}.npz"
            prompt = None
            if path.is_file():
                try:
                    prompt = self._load_prompt(path)
                except Exception as e:  # a damaged cache is recomputed, not fatal
                    log.warning("voice prompt cache %s unreadable (%s); preparing again", path, e)
            if prompt is None:
                if self.prepare is None:
                    raise VoiceBankError(f"voice {voice.name!r} has no prepared prompt yet and no token2wav to prepare it")
                from stepvoice.engine.audio import load_audio

                prompt = self.prepare(load_audio(voice.clip))
                prompt.save(path)
            self._prompts[name] = self._prompts[voice.name] = prompt
            return prompt

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> "VoiceBank":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
