"""Voice bank: reference voices (clip, description, tags, transcript, cached token2wav prompt).

    from stepvoice.voice_bank import VoiceBank
    bank = VoiceBank.open(data_dir, prepare=token2wav.prepare_voice)
    bank.add("me.wav", "me", "a warm low male voice")
    bank.find("低沉的男声")      # -> VoiceMatch(name, description, score)
    bank.prompt("me")           # -> VoicePrompt (cached on disk after the first time)
"""
from stepvoice.voice_bank.bank import VoiceBank
from stepvoice.voice_bank.prompt_key import prompt_key_for
from stepvoice.voice_bank.starter import default_clip, starter_voices
from stepvoice.voice_bank.voice import DEFAULT_VOICE, Voice, VoiceBankError, VoiceMatch, VoiceNotFound

__all__ = ["DEFAULT_VOICE", "Voice", "VoiceBank", "VoiceBankError", "VoiceMatch", "VoiceNotFound", "default_clip",
           "prompt_key_for", "starter_voices"]
