"""voice_bank package."""
