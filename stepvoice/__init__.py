"""stepvoice: the agent runtime for StepFun's Step-Audio 2 mini.

One import namespace over the repository's top-level folders (mapped by
pyproject's package-dir): `stepvoice.engine`, `stepvoice.tools`,
`stepvoice.retrieval`, `stepvoice.voice_bank`, `stepvoice.assistant`.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("stepvoice")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
