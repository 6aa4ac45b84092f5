"""Keep credentials out of every log line, whatever logger or handler emits it.

Adapters call :func:`register_secret` with each credential they hold; :func:`install` puts a
filter on the root logger's handlers (and Prefect's) that replaces any registered value, and its
Basic-auth encoding, with ``***``.
"""

from __future__ import annotations

import base64
import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"


def is_secret_key(name: str) -> bool:
    """Whether a config key holds a credential (its value is never shown, and is masked once read)."""
    lowered = name.lower()
    return any(word in lowered for word in ("key", "secret", "token", "password"))


def register_secret(value: str | None) -> None:
    """Mask ``value`` (and its ``value:X`` Basic-auth form) in every log record from now on."""
    if not value or len(value) < 4:
        return
    with _lock:
        _secrets.add(value)
        for password in ("X", "x", ""):
            _secrets.add(base64.b64encode(f"{value}:{password}".encode()).decode())


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites records so no registered secret reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_filter = RedactingFilter()


def install(*logger_names: str) -> None:
    """Attach the filter to the named loggers (root by default) and to all their handlers."""
    for name in logger_names or ("",):
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
        for handler in logger.handlers:
            if _filter not in handler.filters:
                handler.addFilter(_filter)
