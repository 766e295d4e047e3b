"""Audio I/O for the voice loop: a backend interface (mic blocks in, playback queue out),
an in-process backend (arrays/files, recorded speaker) and a PortAudio backend."""
from stepvoice.assistant.audio_io.backend import MIC_RATE, AudioBackend, DeviceLost, EndOfInput, MicBlock
from stepvoice.assistant.audio_io.inprocess import InProcessAudio
from stepvoice.assistant.audio_io.playback import PlaybackQueue

__all__ = ["MIC_RATE", "AudioBackend", "DeviceLost", "EndOfInput", "MicBlock", "InProcessAudio", "PlaybackQueue"]
