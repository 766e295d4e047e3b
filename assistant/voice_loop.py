"""The desktop voice loop: mic -> VAD/endpointing -> utterance -> Session.respond(reply="speech")
-> text shown live, AudioChunks to the speaker; barge-in; latency trace.

Two tasks share one `VoiceLoop` object: the listener reads mic blocks and runs
the endpointer (so speech is noticed even while a reply plays), the talker
takes finished utterances one at a time and plays the session's reply.

Half duplex (default, open speakers): the mic is ignored while a reply is
generated or played, and for `echo_guard_ms` after. Full duplex
(`--headphones`, or `echo_cancel` on open speakers: WebRTC AEC3 removes the
reply's echo from the mic first): user speech during a reply is a barge-in:
playback stops at once, generation is cancelled, and the session keeps only
what was heard.
Push-to-talk: `press()` / `release()` replace the VAD; a press during a reply
is a barge-in in either mode.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from stepvoice.assistant.audio_io.backend import AudioBackend, DeviceLost, EndOfInput, MicBlock
from stepvoice.assistant.endpointing import EndpointConfig, Endpointer, SpeechEnd, SpeechStart
from stepvoice.assistant.trace import TurnTrace
from stepvoice.engine.errors import AudioError, StepvoiceError
from stepvoice.engine.events import (AudioChunk, Interrupted, SpeechCodes, TextDelta, ToolCall, ToolResult, TurnEnd,
                           VoiceChanged)

log = logging.getLogger(__name__)


@dataclass
class VoiceLoopConfig:
    full_duplex: bool = False  # --headphones: listen while speaking (barge-in by voice)
    echo_cancel: bool = False  # open speakers, full duplex: remove the reply's echo from the mic (WebRTC AEC3)
    push_to_talk: bool = False
    trace: bool = False  # print the latency trace of each turn
    echo_guard_ms: float = 300.0  # half duplex: stay deaf this long after playback ends (room echo)
    stall_timeout_s: float = 3.0  # no mic block for this long = the device is gone
    reopen_attempts: int = 3  # after a device is lost
    reopen_delay_s: float = 0.5
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)


@dataclass
class _Reply:
    """The reply in progress (one per turn)."""

    trace: TurnTrace
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: Interrupted | None = None


class VoiceLoop:
    def __init__(
        self,
        session: Any,
        audio: AudioBackend,
        *,
        config: VoiceLoopConfig | None = None,
        vad: Callable | None = None,
        out: TextIO | None = None,
        log_path: str | Path | None = None,
        on_event: Callable[[Any], None] | None = None,
    ):
        self.session = session
        self.audio = audio
        self.config = config or VoiceLoopConfig()
        if vad is None:
            from stepvoice.assistant.vad import SileroVAD

            vad = SileroVAD()
        if self.config.push_to_talk:
            vad_for_endpointer: Callable = lambda frame: 0.0  # noqa: E731  (the key decides, not the VAD)
        else:
            vad_for_endpointer = vad
        self.endpointer = Endpointer(vad_for_endpointer, self.config.endpoint)
        self.echo = None
        if self.config.echo_cancel:
            from stepvoice.assistant.audio_io.echo import EchoCanceller

            self.echo = EchoCanceller()
        self.out = out if out is not None else sys.stdout
        self.log_path = Path(log_path) if log_path else None
        self.on_event = on_event
        self.traces: list[TurnTrace] = []
        self.interruptions: list[Interrupted] = []
        self.errors: list[str] = []
        self._utterances: asyncio.Queue[tuple[SpeechEnd, float, float]] = asyncio.Queue()
        self._reply: _Reply | None = None  # set from utterance hand-off until playback is over
        self._deaf_until = 0.0
        self._speech_started_at: float | None = None
        self._turns = 0
        self._line_open = False  # a reply line is being printed
        self._last_block_at = 0.0
        self._blocks_since_open = 0

    # ---- public ----------------------------------------------------------------------

    async def run(self, *, max_turns: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Listen and answer until `stop` is set, `max_turns` replies were played, or a
        finite input ends. Device loss: reopen up to `reopen_attempts` times, then raise
        `AudioError`. The streams are closed however it ends."""
        stop = stop or asyncio.Event()
        await self.audio.start()
        self._attach_echo()
        listener = asyncio.create_task(self._listen(), name="voice-listen")
        talker = asyncio.create_task(self._talk(max_turns), name="voice-talk")
        stopper = asyncio.create_task(stop.wait(), name="voice-stop")
        losses = 0
        try:
            while True:
                done, _ = await asyncio.wait({listener, talker, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done or talker in done:
                    break
                if listener in done:
                    exc = listener.exception()
                    if exc is None:  # input ended: finish the turns already heard
                        await self._finish_pending(talker, stopper)
                        break
                    if not isinstance(exc, DeviceLost):
                        raise exc
                    self._barge_in(self.audio.clock(), reason="device-lost")
                    # a device that fails again before delivering anything counts as not reopened
                    losses = losses + 1 if self._blocks_since_open == 0 else 1
                    await self._reopen(exc, losses)
                    listener = asyncio.create_task(self._listen(), name="voice-listen")
            if talker.done() and talker.exception() is not None:
                raise talker.exception()
        finally:
            if self._reply is not None:
                self._barge_in(self.audio.clock(), reason="stopped")
            for task in (listener, talker, stopper):
                task.cancel()
            await asyncio.gather(listener, talker, stopper, return_exceptions=True)
            self.audio.playback.stop()
            await self.audio.close()

    def press(self) -> None:
        """Push-to-talk key down: start an utterance (and interrupt a reply)."""
        start = self.endpointer.begin()
        self._on_speech_start(start, self.audio.clock())

    def release(self) -> None:
        """Push-to-talk key up: the utterance is complete."""
        end = self.endpointer.end()
        if isinstance(end, SpeechEnd):
            now = self.audio.clock()
            self._utterances.put_nowait((end, self._speech_started_at or now, now))

    # ---- listening ---------------------------------------------------------------------

    async def _listen(self) -> None:
        watchdog = asyncio.create_task(self._watch_input(), name="voice-watchdog")
        try:
            while True:
                try:
                    block = await self.audio.read()
                except EndOfInput:
                    return
                self._last_block_at = self.audio.clock()
                self._blocks_since_open += 1
                self._hear(block)
        finally:
            watchdog.cancel()

    async def _watch_input(self) -> None:
        """A device that silently stops delivering is as lost as one that reports an error."""
        limit = self.config.stall_timeout_s
        self._last_block_at = self.audio.clock()
        while True:
            await asyncio.sleep(min(0.5, limit / 2))
            if self.audio.clock() - self._last_block_at > limit:
                self.audio.report(DeviceLost(f"{self.audio.description}: no audio from the input device "
                                             f"for {limit:.1f} s"))
                return

    def _attach_echo(self) -> None:
        if self.echo is not None:  # the backend may have a new playback queue after (re)opening
            self.audio.playback.tap = self.echo.far

    def _hear(self, block: MicBlock) -> None:
        samples = self.echo.near(block.samples) if self.echo is not None else block.samples
        if not self._mic_open(block.t):
            self.endpointer.reset()
            return
        for event in self.endpointer.push(samples):
            if isinstance(event, SpeechStart):
                self._on_speech_start(event, block.t)
            elif isinstance(event, SpeechEnd):
                # the block that completed the hangover arrived at block.t
                self._utterances.put_nowait((event, self._speech_started_at or block.t, block.t))

    def _mic_open(self, t: float) -> bool:
        if self.config.full_duplex or self.config.echo_cancel:
            return True
        if self.config.push_to_talk and self.endpointer.in_speech:
            return True  # the user holds the key: take the audio even over a reply
        return self._reply is None and t >= self._deaf_until

    def _on_speech_start(self, event: SpeechStart, t: float) -> None:
        self._speech_started_at = t
        if self._reply is not None:
            self._barge_in(t)

    def _barge_in(self, t: float, reason: str = "barge-in") -> None:
        reply = self._reply
        if reply is None or reply.interrupted is not None:
            return
        played = self.audio.playback.stop()  # first: every ms here is audio the user hears
        reply.cancel.set()
        played_s = self.audio.playback.seconds(played)
        reply.interrupted = Interrupted(played_s, reason)
        reply.trace.interrupted = True
        reply.trace.played_s = played_s
        self.interruptions.append(reply.interrupted)
        self._emit(reply.interrupted)

    # ---- talking -----------------------------------------------------------------------

    async def _talk(self, max_turns: int | None) -> None:
        while max_turns is None or self._turns < max_turns:
            end, started_at, endpoint_at = await self._utterances.get()
            await self._turn(end, started_at, endpoint_at)
            self._turns += 1

    async def _finish_pending(self, talker: asyncio.Task, stopper: asyncio.Task) -> None:
        """Input ended: let the talker play what was already heard, then stop."""
        while not talker.done() and not stopper.done() and (self._reply is not None or not self._utterances.empty()):
            await asyncio.sleep(0.01)

    async def _turn(self, end: SpeechEnd, started_at: float, endpoint_at: float) -> None:
        trace = TurnTrace(
            turn=len(self.traces) + 1,
            speech_start=started_at,
            speech_end=endpoint_at - end.hangover_s,
            endpoint=endpoint_at,
            hangover_s=end.hangover_s,
            user_s=len(end.samples) / 16000,
        )
        self.traces.append(trace)
        reply = _Reply(trace)
        playback = self.audio.playback
        playback.mark()
        self._reply = reply
        clock = self.audio.clock
        text: list[str] = []
        try:
            async for event in self.session.respond(end.samples, reply="speech", cancel=reply.cancel):
                now = clock()
                if trace.first_token is None and isinstance(event, (TextDelta, SpeechCodes, ToolCall)):
                    trace.first_token = now
                if isinstance(event, SpeechCodes) and trace.first_code is None:
                    trace.first_code = now
                elif isinstance(event, AudioChunk):
                    if trace.first_pcm is None:
                        trace.first_pcm = now
                    if not reply.cancel.is_set():
                        playback.put(event.pcm, event.sample_rate)
                elif isinstance(event, TextDelta) and event.channel != "think":
                    text.append(event.text)
                elif isinstance(event, TurnEnd):
                    trace.end_reason = event.reason
                self._show(event)
            if not reply.cancel.is_set():
                playback.end_of_stream()
                while playback.pending > 0 and not reply.cancel.is_set():
                    await asyncio.sleep(0.005)
        except StepvoiceError as e:  # the conversation survives a failed turn
            self._error(str(e))
        finally:  # also when the loop is stopped mid-reply (Ctrl-C): history keeps only what was heard
            self._reply = None
            trace.playback_start = playback.first_read_at
            trace.done = clock()
            trace.reply_text = "".join(text)
            if not trace.interrupted:
                trace.played_s = playback.seconds(playback.played_since_mark)
            self._deaf_until = trace.done + self.config.echo_guard_ms / 1000
            self._end_line()
            if reply.interrupted is not None and hasattr(self.session, "truncate_last_reply"):
                self.session.truncate_last_reply(reply.interrupted.played_s)
        if self.config.trace:
            print(trace.line(), file=self.out, flush=True)
        self._log({"type": "turn", **trace.to_dict()})

    # ---- device loss -------------------------------------------------------------------

    async def _reopen(self, exc: DeviceLost, losses: int) -> None:
        if losses > self.config.reopen_attempts:
            raise AudioError(f"audio device lost and could not be reopened: {exc}")
        self._error(f"{exc}; reopening the audio devices")
        last: Exception = exc
        for _ in range(self.config.reopen_attempts):
            try:
                await self.audio.close()
            except Exception:  # noqa: BLE001  (a dead stream may fail to close; reopening matters)
                log.debug("closing a lost device failed", exc_info=True)
            await asyncio.sleep(self.config.reopen_delay_s)
            try:
                await self.audio.start()
            except AudioError as e:
                last = e
                continue
            self.endpointer.reset()
            self._blocks_since_open = 0
            self._attach_echo()
            return
        raise AudioError(f"audio device lost and could not be reopened: {last}")

    # ---- output ------------------------------------------------------------------------

    def _show(self, event: Any) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if isinstance(event, TextDelta) and event.channel != "think":
            if not self._line_open:
                self.out.write("assistant: ")
                self._line_open = True
            self.out.write(event.text)
            self.out.flush()
        elif isinstance(event, ToolCall):
            self._end_line()
            print(f"[tool] {event.name}({json.dumps(event.arguments, ensure_ascii=False)})", file=self.out)
        elif isinstance(event, ToolResult):
            print(f"[tool] {event.name} -> {'ok' if event.ok else 'failed'}", file=self.out)
        elif isinstance(event, VoiceChanged):
            self._end_line()
            print(f"[voice] {event.name}", file=self.out)
        elif isinstance(event, TurnEnd) and event.error:
            self._error(event.error)

    def _emit(self, event: Any) -> None:
        if self.on_event is not None:
            self.on_event(event)
        self._end_line()
        if isinstance(event, Interrupted):
            why = "" if event.reason == "barge-in" else f" ({event.reason})"
            print(f"[interrupted after {event.played_s:.2f} s{why}]", file=self.out, flush=True)
            self._log({"type": "interrupted", "played_s": event.played_s, "reason": event.reason})

    def _end_line(self) -> None:
        if self._line_open:
            self.out.write("\n")
            self.out.flush()
            self._line_open = False

    def _error(self, message: str) -> None:
        self._end_line()
        self.errors.append(message)
        print(f"error: {message}", file=self.out, flush=True)
        self._log({"type": "error", "message": message})

    def _log(self, record: dict) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
