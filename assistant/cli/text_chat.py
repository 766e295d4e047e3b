"""`stepvoice chat --text`: a typed multi-turn chat in the terminal.

Line editing and history come from prompt_toolkit when stdin and stdout are a terminal; with piped
stdin each line is one turn and the chat ends at end of input (scripts, tests). Replies stream as they
are generated; with --speak they are also played on the speaker. Commands: /voice NAME, /style TEXT,
/reset, /quit (and /help).
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, TextIO

from stepvoice.assistant.cli.render import ReplyPrinter
from stepvoice.engine.errors import StepvoiceError
from stepvoice.engine.events import AudioChunk, TurnEnd

HELP = "commands: /voice NAME, /style TEXT (or /style to clear), /reset, /quit"


class TextChat:
    """One typed conversation over a Session. `read_line` returns None at end of input."""

    def __init__(self, session: Any, read_line: Callable[[], str | None], *, out: TextIO | None = None,
                 speaker: Any = None, echo_input: bool = False):
        self.session = session
        self.read_line = read_line
        self.out = out or sys.stdout
        self.speaker = speaker  # an object with play(pcm, sample_rate) and drain(), or None
        self.echo_input = echo_input  # piped input is not shown by a terminal: print it as `you: ...`
        self.turns = 0

    async def run(self) -> None:
        while True:
            line = await asyncio.to_thread(self.read_line)
            if line is None:
                return
            line = line.strip()
            if not line:
                continue
            if self.echo_input:
                print(f"you: {line}", file=self.out, flush=True)
            if line.startswith("/"):
                if not self.command(line):
                    return
                continue
            await self.turn(line)

    def command(self, line: str) -> bool:
        """Handle one /command; False ends the chat."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/reset":
            self.session.history = []
            self._say("[conversation cleared]")
        elif name == "/voice":
            if not rest:
                self._say(f"[voice: {self.session.voice or 'default'}]")
            elif self.speaker is None:
                self._say("error: /voice NAME changes the speaking voice: start the chat with --speak")
            else:
                try:
                    self.session.set_voice(rest)
                    self._say(f"[voice: {rest}]")
                except StepvoiceError as e:
                    self._say(f"error: {e}")
        elif name == "/style":  # a preset (slow, whisper, excited ...) or free text: the system prompt's style line
            self.session.style = rest or None
            self._say(f"[style: {rest}]" if rest else "[style cleared]")
        elif name == "/help":
            self._say(HELP)
        else:
            self._say(f"error: unknown command {name}; {HELP}")
        return True

    async def turn(self, text: str) -> None:
        from stepvoice.engine.messages import Message, Text

        printer = ReplyPrinter(self.out, self.out, prefix="assistant: ")
        reply = "speech" if self.speaker is not None else "text"
        try:
            async for event in self.session.respond(Message("human", [Text(text)]), reply=reply):
                printer(event)
                if isinstance(event, AudioChunk) and self.speaker is not None:
                    self.speaker.play(event.pcm, event.sample_rate)
                elif isinstance(event, TurnEnd) and event.reason in ("error", "script_exhausted"):
                    printer.end_line()
                    self._say(f"error: {event.error or event.reason}")
        except StepvoiceError as e:  # the conversation survives a failed turn
            printer.end_line()
            self._say(f"error: {e}")
        printer.end_line()
        if self.speaker is not None:
            await asyncio.to_thread(self.speaker.drain)
        self.turns += 1

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def line_reader(interactive: bool, history_file: Any = None) -> Callable[[], str | None]:
    """prompt_toolkit's prompt on a terminal (editing, history); plain readline for piped input."""
    if interactive:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        prompt = PromptSession(history=FileHistory(str(history_file)) if history_file else InMemoryHistory())

        def read() -> str | None:
            try:
                return prompt.prompt("you: ")
            except EOFError:
                return None
        return read

    def read_pipe() -> str | None:
        line = sys.stdin.readline()
        return line if line else None
    return read_pipe


class Speaker:
    """Plays reply audio on an output device as it arrives (PortAudio callback reading a PlaybackQueue,
    resampled to the device's own rate)."""

    def __init__(self, device: Any = None):
        from stepvoice.assistant.audio_io.devices import check_rate, find_device, sounddevice
        from stepvoice.assistant.audio_io.playback import PlaybackQueue

        self.device = find_device(device, "output")
        rate = int(self.device.default_samplerate)
        check_rate(self.device, "output", rate)
        self.queue = PlaybackQueue(rate)
        self._stream = sounddevice().OutputStream(
            device=self.device.index, samplerate=rate, channels=1, dtype="float32", blocksize=max(1, rate // 50),
            callback=lambda out, frames, t, status: self.queue.read(frames, out[:, 0]))
        self._stream.start()

    def play(self, pcm: Any, sample_rate: int) -> None:
        self.queue.put(pcm, sample_rate)

    def drain(self) -> None:
        """Wait until the reply has been played (called from a worker thread)."""
        import time

        self.queue.end_of_stream()
        while self.queue.pending > 0:
            time.sleep(0.01)

    def close(self) -> None:
        self._stream.abort(ignore_errors=True)
        self._stream.close(ignore_errors=True)


def run_text_chat(session: Any, *, speak: bool, output_device: Any, history_file: Any) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    speaker = Speaker(output_device) if speak else None
    chat = TextChat(session, line_reader(interactive, history_file), speaker=speaker, echo_input=not interactive)
    if interactive:
        print(f"typed chat; {HELP}; Ctrl-D ends", file=sys.stderr)
    registry = session.tools

    async def main() -> None:
        if registry is not None and hasattr(registry, "start"):
            await registry.start()
        try:
            if speak:
                await session.prepare_speech()
            await chat.run()
        finally:
            if registry is not None and hasattr(registry, "aclose"):
                await registry.aclose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        if speaker is not None:
            speaker.close()
    return 0
