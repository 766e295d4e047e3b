"""Errors that reach a user as one clear line."""


class StepvoiceError(Exception):
    """A failure the user can act on; its message is shown as one line, without a traceback."""


class AudioError(StepvoiceError):
    """Audio that cannot be read or used (corrupt, empty, NaN, unsupported format)."""


class CheckpointError(StepvoiceError):
    """A checkpoint folder that is missing files, tensors or tokens, or has the wrong shapes."""


class ConfigError(StepvoiceError):
    """A config file or value that is missing, malformed or of the wrong kind."""
