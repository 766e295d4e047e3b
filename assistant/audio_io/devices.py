"""Sound devices through sounddevice (PortAudio): import with a clear message when PortAudio
is missing, list devices, pick one by index or (part of its) name, check a rate."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from stepvoice.engine.errors import AudioError

Kind = Literal["input", "output"]

PORTAUDIO_HELP = ("PortAudio is not installed. Debian/Ubuntu: sudo apt install libportaudio2; "
                  "macOS: brew install portaudio; Windows: pip install sounddevice (the wheel bundles it)")


def sounddevice() -> Any:
    """The sounddevice module, or an AudioError that says how to install PortAudio."""
    try:
        import sounddevice as sd
    except OSError as e:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise AudioError(f"{PORTAUDIO_HELP} ({e})") from None
    except ImportError:
        raise AudioError("the sounddevice package is not installed (pip install sounddevice)") from None
    return sd


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float

    def channels(self, kind: Kind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


def list_devices() -> list[Device]:
    sd = sounddevice()
    try:
        infos = sd.query_devices()
        apis = sd.query_hostapis()
    except Exception as e:  # PortAudioError
        raise AudioError(f"cannot list sound devices: {e}") from None
    return [Device(int(d["index"]), str(d["name"]), str(apis[d["hostapi"]]["name"]),
                   int(d["max_input_channels"]), int(d["max_output_channels"]), float(d["default_samplerate"]))
            for d in infos]


def default_index(kind: Kind) -> int | None:
    sd = sounddevice()
    pair = sd.default.device
    idx = pair[0] if kind == "input" else pair[1]
    return None if idx is None or int(idx) < 0 else int(idx)


def find_device(spec: str | int | None, kind: Kind) -> Device:
    """The device for `spec`: None (the system default), an index, or a unique part of a name."""
    devices = list_devices()
    usable = [d for d in devices if d.channels(kind) > 0]
    if not usable:
        raise AudioError(f"no {kind} device found: connect a {'microphone' if kind == 'input' else 'speaker'} "
                         "or check the sound system (stepvoice chat --list-devices)")
    if spec is None or spec == "":
        idx = default_index(kind)
        chosen = next((d for d in usable if d.index == idx), None)
        return chosen or usable[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
        idx = int(spec)
        for d in devices:
            if d.index == idx:
                if d.channels(kind) == 0:
                    raise AudioError(f"device {idx} ({d.name}) has no {kind} channels")
                return d
        raise AudioError(f"no sound device with index {idx} (see stepvoice chat --list-devices)")
    needle = str(spec).lower()
    exact = [d for d in usable if d.name.lower() == needle]
    if exact:
        return exact[0]
    matches = [d for d in usable if needle in d.name.lower()]
    if not matches:
        raise AudioError(f"no {kind} device matches {spec!r} (see stepvoice chat --list-devices)")
    if len(matches) > 1:
        names = ", ".join(f"{d.index}: {d.name}" for d in matches)
        raise AudioError(f"{spec!r} matches several {kind} devices ({names}); give an index or a longer name")
    return matches[0]


def check_rate(device: Device, kind: Kind, rate: float, channels: int = 1) -> None:
    """Raise a clear AudioError if the device does not take `rate` Hz."""
    sd = sounddevice()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device.index, samplerate=rate, channels=channels, dtype="float32")
    except Exception as e:  # PortAudioError / ValueError
        raise AudioError(f"{kind} device {device.index} ({device.name}) does not accept {rate:g} Hz: {e}") from None


def format_devices(devices: list[Device] | None = None) -> str:
    """A table for `stepvoice chat --list-devices` (defaults marked with > and <)."""
    devices = list_devices() if devices is None else devices
    if not devices:
        return "no sound devices found"
    din, dout = default_index("input"), default_index("output")
    lines = [" idx  in out  rate    name (host API)"]
    for d in devices:
        mark = (">" if d.index == din else " ") + ("<" if d.index == dout else " ")
        lines.append(f"{mark}{d.index:3d} {d.max_input_channels:3d} {d.max_output_channels:3d}  "
                     f"{d.default_samplerate:6.0f}  {d.name} ({d.hostapi})")
    lines.append("> default input, < default output")
    return "\n".join(lines)
