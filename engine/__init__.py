"""Step-Audio 2 runtime: tokens, tensors and audio arrays; nothing of tools or microphones."""
import logging as _logging

# transformers imports torchao whenever it is installed; torchao's CPU-less wheels then log one
# "Failed to load ..._C*.so" warning per CUDA kernel library and torch logs an Enum deprecation.
# Neither matters here (the CPU and CUDA paths we use live in torch itself), so keep stderr clean.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
