"""Keep credentials out of messages and logs: :func:`redact` and the logging filter :class:`RedactingFilter`.

Masked: the user-info part of URLs (``redis://:PASSWORD@host`` becomes ``redis://***@host``),
genguard API keys (``gg_<id>_<secret>`` keeps only its id), ``Bearer`` tokens, and
``password=`` / ``token=`` / ``secret=`` query parameters.

Examples
--------
>>> redact("cannot reach redis://:hunter2@127.0.0.1:6379/0")
'cannot reach redis://***@127.0.0.1:6379/0'
>>> redact("Authorization: Bearer gg_0123abcd_" + "x" * 43)
'Authorization: Bearer ***'
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["RedactingFilter", "redact"]

_PATTERNS: Final = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s'\"]*@"), r"\1***@"),
    (re.compile(r"(?i)\bbearer\s+[^\s'\",]+"), "Bearer ***"),
    (re.compile(r"\b(gg_[0-9a-f]{8}_)[A-Za-z0-9_-]+"), r"\1***"),
    (re.compile(r"(?i)([?&;](?:password|passwd|pass|token|secret|key)=)[^&\s'\"]*"), r"\1***"),
)


def redact(text: str) -> str:
    """``text`` with every credential it contains masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks credentials in the message, its arguments and the traceback.

    Attach it to handlers (a filter on a logger misses records of its children)::

        handler.addFilter(RedactingFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave the record as it is, logging reports it
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
