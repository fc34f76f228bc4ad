"""Audit log: one record per verdict, never the image itself.

Each record holds the time (UTC, ISO 8601), the subject, the image's sha256
and PDQ hash, the scores, decision, reasons and the model versions. Records
go to a JSON Lines file, rotated by size (``audit.jsonl``, ``audit.jsonl.1``,
...), or to a SQLite database when the path ends in ``.sqlite`` or ``.db``.

Both sinks are append-only and safe for concurrent writers: a JSON Lines
record is written with a single ``write`` to a file opened with ``O_APPEND``,
under an exclusive lock on ``PATH.lock`` (which also serialises rotation), so
every line is one complete record even with many threads and processes. The
SQLite table refuses updates and deletes with triggers.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genguard.errors import AuditError
from genguard.verdict import Verdict

try:
    import fcntl
except ImportError:  # Windows: only threads of one process are serialised
    fcntl = None  # type: ignore[assignment]

__all__ = ["AuditError", "AuditLog"]

logger = logging.getLogger(__name__)

_SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")



class AuditLog:
    """Append one record per verdict to a JSON Lines file (rotated) or a SQLite database.

    Parameters
    ----------
    path : str or PathLike
        ``*.sqlite``, ``*.sqlite3`` or ``*.db`` for SQLite, any other name for JSON Lines.
        Parent folders are created.
    max_bytes : int, default 100 MiB
        Rotate the JSON Lines file before a record would take it past this size (0: never).
    backups : int, default 10
        Rotated files kept (``PATH.1`` is the newest); older ones are deleted.

    Examples
    --------
    >>> import tempfile, os
    >>> from genguard import Verdict, Scores
    >>> log = AuditLog(os.path.join(tempfile.mkdtemp(), "audit.jsonl"))
    >>> log.record(Verdict("allow", Scores(0.1, 0.0)), subject="user-1")["decision"]
    'allow'
    >>> [r["subject"] for r in log.records()]
    ['user-1']
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 100 * 1024 * 1024, backups: int = 10) -> None:
        if max_bytes < 0 or backups < 0:
            raise ValueError(f"max_bytes and backups must be >= 0, got {max_bytes} and {backups}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.sqlite = self.path.suffix.lower() in _SQLITE_SUFFIXES
        self._thread_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.sqlite:
                # Switching to WAL needs the database to itself, and SQLite answers "locked"
                # at once (no busy wait) when another connection is writing; so the one-time
                # setup runs under the same file lock as JSON Lines appends. WAL then persists
                # in the file, and later connections need not ask for it.
                with self._file_lock(), closing(self._connect()) as conn:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.executescript(_SQL_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot open audit log {str(self.path)!r}: {exc}") from exc

    def record(self, verdict: Verdict, *, subject: str | None = None, source: str | None = None) -> dict[str, Any]:
        """Append a record for ``verdict`` and return it.

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
            The record cannot be written.
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
            "models": {
                "backbone": verdict.backbone,
                "head": verdict.head,
                "genguard": __version__,
            },
        }
        line = json.dumps(rec, separators=(",", ":"), default=str)
        try:
            self._append_sqlite(rec, line) if self.sqlite else self._append_line((line + "\n").encode("utf-8"))
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot append to audit log {str(self.path)!r}: {exc}") from exc
        return rec

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first (rotated JSON Lines files included)."""
        if self.sqlite:
            with closing(self._connect()) as conn:
                yield from (json.loads(row[0]) for row in conn.execute("SELECT record FROM audit ORDER BY id"))
            return
        files = [self.path.with_name(f"{self.path.name}.{i}") for i in range(self.backups, 0, -1)] + [self.path]
        for f in files:
            if f.exists():
                with open(f, encoding="utf-8") as fh:
                    yield from (json.loads(line) for line in fh if line.strip())

    # ------------------------------------------------------------------ JSON Lines
    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Exclusive across this object's threads and across processes (``PATH.lock``)."""
        with self._thread_lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
            yield

    def _append_line(self, data: bytes) -> None:
        with self._file_lock():
            if self.max_bytes and self.path.exists():
                size = self.path.stat().st_size
                if size and size + len(data) > self.max_bytes:
                    self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write: {written} of {len(data)} bytes")
            finally:
                os.close(fd)

    def _rotate(self) -> None:
        if self.backups == 0:
            os.truncate(self.path, 0)
            return
        name = self.path.name
        oldest = self.path.with_name(f"{name}.{self.backups}")
        if oldest.exists():
            oldest.unlink()
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{name}.{i}")
            if src.exists():
                src.rename(self.path.with_name(f"{name}.{i + 1}"))
        self.path.rename(self.path.with_name(f"{name}.1"))
        logger.info("rotated audit log %s", self.path)

    # ------------------------------------------------------------------ SQLite
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _append_sqlite(self, rec: dict[str, Any], line: str) -> None:
        conn = self._connect()
        try:
            with conn:
                conn.execute(
                    "INSERT INTO audit (time, subject, decision, sha256, pdq, record) VALUES (?, ?, ?, ?, ?, ?)",
                    (rec["time"], rec["subject"], rec["decision"], rec["sha256"], rec["pdq"], line),
                )
        finally:
            conn.close()


_SQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, subject TEXT, decision TEXT NOT NULL,
    sha256 TEXT, pdq TEXT, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_subject_time ON audit (subject, time);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
