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
from stepvoice.engine.prefix_cache import PrefixCache
from stepvoice.engine.options import HF_DEFAULTS, GenerationOptions, SamplingDefaults, read_generation_config

log = logging.getLogger(__name__)


class LocalBackend:
    name = "local"

    def __init__(self, model, tokenizer, *, source: str | Path = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.source = str(source)
        self.last_prompt_ids: list[int] = []  # what the model saw last time (for `ask --json`)
        # unset sampling values come from the checkpoint's generation_config.json (from_spec), else HF's
        self.sampling_defaults: SamplingDefaults = HF_DEFAULTS
        self.last_options: GenerationOptions | None = None  # the effective options of the last generation
        self.step = None  # engine.compile.DecodeStep when decoding is compiled (from_spec, --compile)
        self._step_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: str | Path | None = None, device: str | torch.device | None = None,
                  dtype: str | torch.dtype | None = None, *, quantize: str | None = "none",
                  compile: str | bool | None = "auto") -> "LocalBackend":
        """Resolve a folder or hub id, load its weights onto `device` (default: cuda,
        else mps, else cpu) and its tokenizer; `quantize` / `compile` as in engine.quantize / engine.compile."""
        from stepvoice.engine.checkpoint import load_model, resolve
        from stepvoice.engine.compile import make_decode_step, should_compile
        from stepvoice.engine.tokenizer import load_tokenizer

        path = resolve(spec)
        if path.is_file():
            raise StepvoiceError(f"{path} is a file, not a checkpoint folder (for a script use scripted:{path})")
        tokenizer = load_tokenizer(path)
        model = load_model(path, device, dtype, quantize=quantize)
        backend = cls(model, tokenizer, source=path)
        if should_compile(compile, model.device, model.quantization):
            backend.step = make_decode_step(model, compile=True)
        backend.sampling_defaults = read_generation_config(path)
        return backend

    @property
    def device(self) -> torch.device:
        return self.model.device

    def warm_up(self) -> float:
        """Compile the decode step now (before the first reply); seconds it took, 0 when not compiled."""
        if self.step is None:
            return 0.0
        with self._step_lock:
            seconds = self.step.warm_up()
        log.info("compiled decode warm-up: %.1f s", seconds)
        return seconds

    def _stop_ids(self) -> set[int]:
        stops = {self.tokenizer.eot_id}
        if getattr(self.tokenizer, "endoftext_id", None) is not None:
            stops.add(self.tokenizer.endoftext_id)
        return stops

    def new_prefix_cache(self, enabled: bool = True) -> PrefixCache:
        """A KV cache a session keeps across its turns (pass it as `generate(..., prefix=)`)."""
        return PrefixCache(enabled)

    async def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: asyncio.Event | None = None,
        *,
        prefix: PrefixCache | None = None,
    ) -> AsyncIterator[EngineEvent]:
        """Events of one generation. With `prefix` (a session's kept cache) only the ids after the
        longest common prefix with its previous generation run (engine.prefix_cache)."""
        run = _PrefixRun(prefix if prefix is not None and prefix.claim() else None)
        try:
            async for event in self._generate(messages, options, cancel, run):
                yield event
        finally:
            run.finish()

    async def _start(self, prompt, options: GenerationOptions, stops: set[int], run: "_PrefixRun") -> Generation:
        """A Generation over `prompt`, resumed from the kept cache when there is one."""
        # the cache is allocated here (and the sampler set up): in a thread, not on the event loop
        gen = await asyncio.to_thread(Generation, self.model, prompt.ids, prompt.mels, prompt.audio_starts, options,
                                      stop_ids=stops, step=self.step)
        run.gen, run.prompt = gen, prompt
        if run.prefix is None:
            return gen
        reuse = run.prefix.take(prompt.ids, prompt.mels, prompt.audio_starts)
        if reuse.cached:
            def resume() -> None:
                with self._step_lock:
                    gen.resume(reuse.cache, reuse.cached)

            run.in_step = True
            await asyncio.to_thread(resume)
            run.in_step = False
        run.cached += reuse.cached
        return gen

    async def _generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        cancel: asyncio.Event | None,
        run: "_PrefixRun",
    ) -> AsyncIterator[EngineEvent]:
        from stepvoice.engine.prompt import build_prompt, think_continuation
        from stepvoice.engine.stream_decode import EventDecoder, ThinkEnd

        start = time.perf_counter()
        # unset sampling values: the checkpoint's generation_config.json, then transformers' defaults
        options = options.resolved(self.sampling_defaults)
        self.last_options = options
        # tokenizing the conversation and the audio features take 0.1 s and more: off the event loop;
        # bad input raises here, before any event
        prompt = await asyncio.to_thread(build_prompt, messages, self.tokenizer, options)
        self._check_fits(len(prompt.ids))
        self.last_prompt_ids = list(prompt.ids)
        stops = self._stop_ids()
        gen = await self._start(prompt, options, stops, run)
        decoder = EventDecoder(self.tokenizer, options.reply)
        # Think: phase 1 reasons until the decoded text `</think>` (see ThinkEnd), phase 2 speaks.
        think = ThinkEnd(self.tokenizer) if options.reply == "think" else None
        error: str | None = None
        fed: list[int] = []  # the reply's ids as history keeps them (Think: the second phase only)
        n_prompt, n_completion = len(prompt.ids), 0

        def step() -> int | None:
            with self._step_lock:
                return gen.next_token()

        async def next_token() -> int | None:
            run.in_step = True  # a step cut short by task cancellation leaves the cache unknown
            token = await asyncio.to_thread(step)
            run.in_step = False
            return token

        while True:
            if cancel is not None and cancel.is_set():
                gen.cancel()
                break
            try:
                token = await next_token()
            except Exception as e:  # a model failure ends the turn with a reason, not a traceback
                log.exception("generation failed")
                run.in_step = True  # the cache may be half-written: not kept
                error = f"{type(e).__name__}: {e}"
                break
            if token is None:
                break
            if gen.reason == "stop" and token in stops:
                break  # <|EOT|> ends the turn; it is not content
            fed.append(token)
            events = decoder.push(token)
            if think is not None and think.push(token):
                # As examples-think.py lines 13-17: the last generated id is dropped and the reply
                # re-opened as "\n<think>\n" + thought + "</think>\n\n<tts_start>", tokenized as one
                # piece like the official second call; a new generation speaks from there.
                second = await asyncio.to_thread(think_continuation, messages, self.tokenizer, think.thought, options)
                try:
                    self._check_fits(len(second.ids))
                except StepvoiceError as e:  # the thought filled the context: end the turn, say why
                    error = str(e)
                    for event in events:
                        yield event
                    break
                self.last_prompt_ids = list(second.ids)
                n_completion += len(gen.generated)
                n_prompt += len(second.ids)
                run.keep()  # the thought is in the cache: the second phase reuses it
                gen = await self._start(second, options, stops, run)
                events += decoder.start_speech()
                fed = []  # history keeps the raw second-phase ids (examples-think.py lines 24-33)
                think = None
            for event in events:
                yield event
        for event in decoder.finish():
            yield event
        reason = "error" if error else (gen.reason or "stop")
        usage = Usage(
            prompt_tokens=n_prompt,
            completion_tokens=n_completion + len(gen.generated),
            audio_seconds=float(getattr(prompt, "audio_seconds", 0.0)),
            elapsed_s=time.perf_counter() - start,
            cached_tokens=run.cached,
        )
        yield TurnEnd(reason, usage, token_ids=tuple(fed), error=error)

    def _check_fits(self, n_prompt: int) -> None:
        limit = self.model.config.text_config.max_position_embeddings
        if n_prompt >= limit:
            raise StepvoiceError(f"the prompt has {n_prompt} tokens; the model takes at most {limit}")


class _PrefixRun:
    """One generation's hold on a session's PrefixCache (prefix None: no reuse)."""

    def __init__(self, prefix: PrefixCache | None):
        self.prefix = prefix
        self.gen: Generation | None = None
        self.prompt = None
        self.cached = 0  # prompt ids taken from the cache, over both Think phases
        self.in_step = False  # True while a model call runs (or after one failed): the cache state is unknown

    def keep(self) -> None:
        if self.prefix is not None and self.gen is not None and self.gen.cache is not None:
            p = self.prompt
            self.prefix.keep(self.gen.cache, self.gen.ids[: self.gen.position], p.mels, p.audio_starts)

    def finish(self) -> None:
        """Keep what the cache holds now (also after a cancel between steps); drop it when a model
        call failed or was cut short."""
        if self.prefix is None:
            return
        ok = not self.in_step
        if ok:
            self.keep()
        self.prefix.release(ok=ok)


__all__ = ["LocalBackend"]
