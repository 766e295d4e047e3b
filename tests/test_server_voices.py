"""OpenAI voice names -> bank voices (server/voices.py) and the session.update voice field."""
from __future__ import annotations

import pytest

from stepvoice.assistant.server.protocol import ProtocolError
from stepvoice.assistant.server.settings import Limits, SessionSettings, apply_update
from stepvoice.assistant.server.voices import VoiceMap, parse_voice_map


def test_openai_names_map_to_the_bank_voices_there_are():
    bank = ["default", "mandarin_deep", "narrator"]
    m = VoiceMap()
    assert m.resolve("alloy", bank) == "default"
    assert m.resolve("ash", bank) == "mandarin_deep"  # deeper voices for the male OpenAI names
    assert m.resolve("verse", ["default", "english_announcer"]) == "english_announcer"
    assert m.resolve("cedar", ["default"]) == "default"  # nothing deeper here: the default
    assert m.resolve("narrator", bank) == "narrator"  # a bank name works as is
    assert m.resolve("nobody", bank) is None
    assert VoiceMap({"alloy": "narrator"}).resolve("alloy", bank) == "narrator"  # --voice-map overrides a row
    assert VoiceMap({"alloy": "gone"}).resolve("alloy", bank) == "default"  # ...falling back to the table


def test_voice_map_flags():
    assert parse_voice_map(["alloy=narrator", " ash = mandarin_deep "]) == {"alloy": "narrator", "ash": "mandarin_deep"}
    for bad in ("alloy", "=x", "alloy="):
        with pytest.raises(ValueError, match="NAME=VOICE"):
            parse_voice_map([bad])


def test_an_unknown_voice_is_one_error_and_the_rest_applies():
    bank = ["default", "mandarin_deep"]
    m = VoiceMap()
    new, errors = apply_update(SessionSettings(), {
        "instructions": "Be brief.", "output_modalities": ["text"], "audio": {"output": {"voice": "nobody"}, "input": {
            "turn_detection": {"type": "semantic_vad", "interrupt_response": True}}}},
        limits=Limits(), resolve_voice=lambda n: m.resolve(n, bank), voices=lambda: bank, eid="ev1")
    assert [(e.param, e.event_id) for e in errors] == [("session.audio.output.voice", "ev1")]
    assert isinstance(errors[0], ProtocolError) and "nobody" in str(errors[0])
    assert new.instructions == "Be brief." and new.output_modalities == ["text"]
    assert new.turn_detection.type == "semantic_vad" and new.voice is None
    new, errors = apply_update(new, {"audio": {"output": {"voice": "ash"}}}, limits=Limits(),
                               resolve_voice=lambda n: m.resolve(n, bank), voices=lambda: bank, eid=None)
    assert not errors and (new.voice, new.voice_name) == ("mandarin_deep", "ash")
    assert new.wire("m")["audio"]["output"]["voice"] == "ash"  # the client's name is echoed back
