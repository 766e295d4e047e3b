"""The local torch engine: a checkpoint folder (or hub id) run in this process.

`generate` builds the prompt (`engine.prompt`), then runs one model step per
token in a worker thread, so the event loop stays free and `cancel` takes
effect between tokens. Each id goes through `engine.stream_decode.EventDecoder`,
which turns ids into `TextDelta` / `SpeechCodes` / `ToolCall` events.

Several generations may run at once on one backend (each has its own KV
cache); their model steps are serialized by a lock.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Sequence

import torch

from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.events import EngineEvent, TurnEnd, Usage
from stepvoice.engine.generate import Generation
from stepvoice.engine.messages import Message
from stepvoice.engine.options import GenerationOptions

log = logging.getLogger(__name__)


class LocalBackend:
    name = "local"

    def __init__(self, model, tokenizer, *, source: str | Path = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.source = str(source)
        self.last_prompt_ids: list[int] = []  # what the model saw last time (for `ask --json`)
        self._step_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str | Path | None = None, device: str | torch.device | None = None,
                  dtype: str | torch.dtype | None = None) -> "LocalBackend":
        """Resolve a folder or hub id, load its weights onto `device` (default: cuda,
        else mps, else cpu) and its tokenizer."""
        from stepvoice.engine.checkpoint import load_model, resolve
        from stepvoice.engine.tokenizer import load_tokenizer

        path = resolve(spec)
        if path.is_file():
            raise StepvoiceError(f"{path} is a file, not a checkpoint folder (for a script use scripted:{path})")
        tokenizer = load_tokenizer(path)
        model = load_model(path, device, dtype)
        return cls(model, tokenizer, source=path)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _stop_ids(self) -> set[int]:
        stops = {self.tokenizer.eot_id}
        if getattr(self.tokenizer, "endoftext_id", None) is not None:
            stops.add(self.tokenizer.endoftext_id)
        return stops

    def _think_resume_ids(self) -> list[int]:
        """Ids that follow a generated `</think>` so the model speaks its answer."""
        from stepvoice.engine.prompt import THINK_TO_SPEECH

        ids = self.tokenizer.encode(THINK_TO_SPEECH)
        return ids[1:] if ids and ids[0] == self.tokenizer.think_end_id else ids

    async def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[EngineEvent]:
        from stepvoice.engine.prompt import build_prompt
        from stepvoice.engine.stream_decode import EventDecoder

        start = time.perf_counter()
        prompt = build_prompt(messages, self.tokenizer, options)  # bad input raises here, before any event
        self._check_fits(len(prompt.ids))
        think = options.reply == "think"
        if think and self.tokenizer.think_end_id is None:
            raise StepvoiceError("reply 'think' needs a Think checkpoint: this tokenizer has no </think> token")
        self.last_prompt_ids = list(prompt.ids)
        stops = self._stop_ids()
        gen = Generation(self.model, prompt.ids, prompt.mels, prompt.audio_starts, options,
                         stop_ids=stops | ({self.tokenizer.think_end_id} if think else set()))
        decoder = EventDecoder(self.tokenizer, options.reply)
        error: str | None = None
        fed: list[int] = []  # every id after the prompt, as the model saw or produced it

        def step() -> int | None:
            with self._step_lock:
                return gen.next_token()

        while True:
            if cancel is not None and cancel.is_set():
                gen.cancel()
                break
            try:
                token = await asyncio.to_thread(step)
            except Exception as e:  # a model failure ends the turn with a reason, not a traceback
                log.exception("generation failed")
                error = f"{type(e).__name__}: {e}"
                break
            if token is None:
                break
            if gen.reason == "stop" and token in stops:
                break  # <|EOT|> ends the turn; it is not content
            fed.append(token)
            events = decoder.push(token)
            if think and gen.reason == "stop" and token == self.tokenizer.think_end_id:
                think = False  # the thought is done: continue into the spoken answer
                resume = self._think_resume_ids()
                gen.stop_ids = frozenset(stops)
                gen.append(resume)
                fed.extend(resume)
                for t in resume:
                    events += decoder.push(t)
            for event in events:
                yield event
        for event in decoder.finish():
            yield event
        reason = "error" if error else (gen.reason or "stop")
        usage = Usage(
            prompt_tokens=len(prompt.ids),
            completion_tokens=len(gen.generated),
            audio_seconds=float(getattr(prompt, "audio_seconds", 0.0)),
            elapsed_s=time.perf_counter() - start,
        )
        yield TurnEnd(reason, usage, token_ids=tuple(fed), error=error)

    def _check_fits(self, n_prompt: int) -> None:
        limit = self.model.config.text_config.max_position_embeddings
        if n_prompt >= limit:
            raise StepvoiceError(f"the prompt has {n_prompt} tokens; the model takes at most {limit}")


__all__ = ["LocalBackend"]
