"""Tamper-evident audit log: one hash-chained record per verdict, never the image itself.

Each record holds the time (UTC, ISO 8601), the subject, the image's sha256 and
PDQ hash, the scores, decision, reasons and the model versions, and the chain
fields ``seq``, ``prev``, ``hash`` (and ``hmac`` with a key). Records go to a
JSON Lines file, rotated by size and never deleted, or to a SQLite database
when the path ends in ``.sqlite``, ``.sqlite3`` or ``.db``.
"""

from __future__ import annotations

from genguard.errors import AuditError

from ._chain import KEY_ENV, load_key
from ._export import Export, export, verify_export
from .log import AuditLog
from ._verify import Head, VerifyReport, head, parse_anchor, verify

__all__ = [
    "KEY_ENV",
    "AuditError",
    "AuditLog",
    "Export",
    "Head",
    "VerifyReport",
    "export",
    "head",
    "load_key",
    "parse_anchor",
    "verify",
    "verify_export",
]
