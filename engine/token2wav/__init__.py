"""token2wav: CosyVoice2 speech codes -> 24 kHz speech in the timbre of a reference voice."""
from engine.token2wav.config import SAMPLE_RATE

__all__ = ["SAMPLE_RATE"]
