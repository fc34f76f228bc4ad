"""AuditLog: one chained record per verdict, never the image itself."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genguard.errors import AuditError
from genguard.verdict import Verdict

from . import _chain, _jsonl, _sqlite

logger = logging.getLogger(__name__)


class AuditLog:
    """Append one hash-chained record per verdict to a JSON Lines file (rotated) or a SQLite database.

    Every record carries ``seq`` (0, 1, 2, ...), ``prev`` (the chain hash of the record before)
    and ``hash`` (its own), and with a key an ``hmac``; ``genguard audit verify`` checks them.

    Parameters
    ----------
    path : str or PathLike
        ``*.sqlite``, ``*.sqlite3`` or ``*.db`` for SQLite, any other name for JSON Lines.
        Parent folders are created. Many threads and processes may write one log; with SQLite
        the AuditLog keeps one connection, so build it in each process (not before a fork).
    max_bytes : int, default 100 MiB
        Rotate the JSON Lines file before a record would take it past this size (0: never).
        A rotated file is renamed ``PATH.<seq of its first record, 12 digits>`` and never deleted.
    key : bytes, optional
        HMAC-SHA256 key (see :func:`load_key`): each record's chain hash is signed, so an
        insider who edits and re-chains the log without the key is caught.
    fsync : bool, default False
        ``fsync`` each record (and the folder after a rotation) before ``record`` returns, so a
        power cut cannot lose an acknowledged record. It costs a disk flush per record
        (``benchmarks/audit_bench.py`` measures it). SQLite commits are crash-safe either way;
        ``fsync`` adds a flush per commit against power cuts.
    backups : None
        Deprecated and ignored: rotated files are never deleted. Archive them after anchoring
        the head (``genguard audit head``).

    Examples
    --------
    >>> import tempfile, os
    >>> from genguard import Verdict, Scores
    >>> log = AuditLog(os.path.join(tempfile.mkdtemp(), "audit.jsonl"))
    >>> rec = log.record(Verdict("allow", Scores(0.1, 0.0)), subject="user-1", source="out/1.png")
    >>> rec["seq"], rec["decision"], len(rec["hash"])
    (0, 'allow', 64)
    >>> [r["subject"] for r in log.records()]
    ['user-1']
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 100 * 1024 * 1024,
        key: bytes | None = None,
        fsync: bool = False,
        backups: int | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if backups is not None:
            warnings.warn("AuditLog(backups=...) is ignored: rotated audit files are never deleted", DeprecationWarning, stacklevel=2)
        if key is not None and len(key) < 16:
            raise ValueError(f"the HMAC key is {len(key)} bytes; use at least 16")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.key = key
        self.fsync = fsync
        self.sqlite = self.path.suffix.lower() in _sqlite.SUFFIXES
        self._jsonl = _jsonl.JsonlSink(self.path, max_bytes, fsync)
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.sqlite:
                # Switching to WAL needs the database to itself, so the one-time setup runs under
                # the same file lock as JSON Lines appends; WAL then persists in the file.
                with self._jsonl.lock(), closing(_sqlite.connect(self.path)) as conn:
                    conn.execute("PRAGMA journal_mode = WAL")
                    _sqlite.setup(conn, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot open audit log {str(self.path)!r}: {exc}") from exc

    def record(self, verdict: Verdict, *, subject: str | None = None, source: str | None = None) -> dict[str, Any]:
        """Append a record for ``verdict`` and return it (chain fields included).

        The image's digests are the ones the Guard computed while scoring it
        (``verdict.sha256`` and ``verdict.pdq``): nothing is decoded or hashed again.

        Parameters
        ----------
        verdict : Verdict
        subject : str, optional
            The user, API key or session id.
        source : str, optional
            Where the image came from (a file name, a request id), recorded as given.

        Raises
        ------
        AuditError
            The record cannot be written (nothing partial is left behind).
        """
        from genguard import __version__

        rec: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "subject": subject,
            "source": source,
            "sha256": verdict.sha256,
            "pdq": verdict.pdq[0] if len(verdict.pdq) == 1 else (list(verdict.pdq) or None),
            "decision": verdict.decision,
            "scores": {"minor": verdict.scores.minor, "sexual": verdict.scores.sexual},
            "reasons": [r.to_dict() for r in verdict.reasons],
            "error": verdict.error,
            "frame": verdict.frame,
            "models": {"backbone": verdict.backbone, "head": verdict.head, "genguard": __version__},
        }

        def encode(seq: int, prev: str) -> tuple[bytes, str]:
            return _chain.encode(rec, seq, prev, self.key)

        try:
            if self.sqlite:
                with self._jsonl.thread_lock:  # one connection, one writer at a time in this process
                    if self._conn is None:
                        self._conn = _sqlite.connect(self.path, fsync=self.fsync)
                    try:
                        line = _sqlite.append(self._conn, encode, _sqlite.columns_of(rec))
                    except sqlite3.Error:
                        self._conn.close()
                        self._conn = None
                        raise
            else:
                line = self._jsonl.append(encode)
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot append to audit log {str(self.path)!r}: {exc}") from exc
        out: dict[str, Any] = json.loads(line)
        return out

    def close(self) -> None:
        """Close the SQLite connection, if one is open (JSON Lines holds no open file)."""
        with self._jsonl.thread_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first (rotated JSON Lines files included), chain fields included.

        A line that is not JSON (a torn or edited record) is logged as a warning with its file and
        line number and skipped; reading goes on. ``genguard audit verify`` checks the chain.
        """
        if self.sqlite:
            if not self.path.exists():
                return
            for seq, _, _, line in _sqlite.rows(self.path):
                parsed = _parse(line, f"{self.path} seq {seq}")
                if parsed is not None:
                    yield parsed
            return
        for f in _jsonl.log_files(self.path):
            with open(f, "rb") as fh:
                for lineno, raw in enumerate(fh, start=1):
                    if not raw.strip():
                        continue
                    parsed = _parse(raw.rstrip(b"\n"), f"{f}:{lineno}")
                    if parsed is not None:
                        yield parsed


def _parse(line: bytes, where: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("audit log %s: skipped a line that is not a record (%s): %r", where, exc, line[:80])
        return None
    if not isinstance(value, dict):
        logger.warning("audit log %s: skipped a line that is not a JSON object", where)
        return None
    return value
