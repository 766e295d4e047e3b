"""Secrets never reach the logs: with `--debug` the WebSocket library logs every request header."""
from __future__ import annotations

import logging
import re

# Wherever a client may put a token: the Authorization header, the browser subprotocol, the query.
_PATTERNS = re.compile(r"(Bearer\s+|openai-insecure-api-key\.|[?&]token=)[^\s,;&'\"]+", re.IGNORECASE)
MASK = "[redacted]"


class RedactSecrets(logging.Filter):
    """Rewrites a record whose text shows the token (or any bearer/subprotocol/query token)."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is left to the handler
            return True
        clean = _PATTERNS.sub(lambda m: m.group(1) + MASK, text)
        if self.token:
            clean = clean.replace(self.token, MASK)
        if clean != text:
            record.msg, record.args = clean, ()
        return True


def redact_secrets_in_logs(token: str | None) -> RedactSecrets:
    """Install the filter on every handler of the root logger (records of all loggers pass there)."""
    f = RedactSecrets(token)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    for handler in root.handlers:
        handler.addFilter(f)
    return f
