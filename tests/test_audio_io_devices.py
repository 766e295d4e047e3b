"""Device lookup and its errors (PortAudio missing, no device, unknown or ambiguous names)."""
from __future__ import annotations

import sys

import pytest

from stepvoice.assistant.audio_io import devices as dev
from stepvoice.assistant.audio_io.devices import Device
from stepvoice.engine.errors import AudioError

FAKE = [
    Device(0, "HDA Intel PCH: ALC892 Analog (hw:0,0)", "ALSA", 2, 8, 44100.0),
    Device(1, "USB Headset Microphone", "ALSA", 1, 0, 48000.0),
    Device(2, "USB Headset Speaker", "ALSA", 0, 2, 48000.0),
    Device(3, "default", "ALSA", 32, 32, 44100.0),
]


@pytest.fixture()
def fake_devices(monkeypatch):
    monkeypatch.setattr(dev, "list_devices", lambda: list(FAKE))
    monkeypatch.setattr(dev, "default_index", lambda kind: 3)


def test_select_by_index_name_part_or_default(fake_devices):
    assert dev.find_device(None, "input").index == 3
    assert dev.find_device("1", "input").name == "USB Headset Microphone"
    assert dev.find_device(2, "output").index == 2
    assert dev.find_device("headset", "input").index == 1  # only one headset device has input channels
    assert dev.find_device("DEFAULT", "output").index == 3


def test_selection_errors_are_clear(fake_devices):
    with pytest.raises(AudioError, match="no sound device with index 9"):
        dev.find_device(9, "input")
    with pytest.raises(AudioError, match="has no input channels"):
        dev.find_device(2, "input")
    with pytest.raises(AudioError, match="no output device matches 'bluetooth'"):
        dev.find_device("bluetooth", "output")
    with pytest.raises(AudioError, match="matches several output devices"):
        dev.find_device("a", "output")


def test_no_devices_at_all(monkeypatch):
    monkeypatch.setattr(dev, "list_devices", lambda: [])
    with pytest.raises(AudioError, match="no input device found"):
        dev.find_device(None, "input")
    monkeypatch.setattr(dev, "default_index", lambda kind: None)
    assert dev.format_devices([]) == "no sound devices found"


def test_device_table_marks_defaults(fake_devices):
    table = dev.format_devices(FAKE)
    assert ">  3" not in table  # both default markers on one row
    assert "><  3" in table and "USB Headset Speaker (ALSA)" in table


def test_missing_portaudio_says_how_to_install_it(monkeypatch):
    class NoPortAudio:
        def find_spec(self, name, path=None, target=None):  # noqa: ANN001
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(AudioError) as e:
        dev.sounddevice()
    assert "libportaudio2" in str(e.value) and "brew install portaudio" in str(e.value)
