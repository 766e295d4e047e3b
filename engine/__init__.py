"""Step-Audio 2 runtime: tokens, tensors and audio arrays; nothing of tools or microphones."""
