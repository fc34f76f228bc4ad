"""The SQLite sink: one row per chained record, appended in an immediate transaction.

The ``record`` column holds the same line as the JSON Lines sink (content and
chain fields); ``time``, ``subject``, ``decision``, ``sha256`` and ``pdq`` are
copies for queries, and ``audit verify`` checks that they agree with it.
Triggers refuse updates and deletes; someone with write access to the file
can drop them, which is why the chain, not the triggers, is the evidence.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

from genguard.errors import AuditError

from . import _chain

logger = logging.getLogger(__name__)

SUFFIXES = (".sqlite", ".sqlite3", ".db")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, subject TEXT, decision TEXT,
    sha256 TEXT, pdq TEXT, hash TEXT NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_subject_time ON audit (subject, time);
"""
_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
COLUMNS = ("time", "subject", "decision", "sha256", "pdq")


def columns_of(record: dict[str, object]) -> tuple[object, ...]:
    """The query columns of a record (``pdq``: the hash, or a JSON list for several frames)."""
    pdq = record.get("pdq")
    return tuple(json.dumps(pdq) if c == "pdq" and isinstance(pdq, list) else record.get(c) for c in COLUMNS)


def connect(path: Path, *, fsync: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode; ``synchronous`` FULL (a disk flush per commit) only with ``fsync``.

    In WAL mode NORMAL loses no committed record when the process crashes, only (the last
    few) on a power cut; FULL flushes each commit.
    """
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
    return conn


def setup(conn: sqlite3.Connection, path: Path) -> None:
    """Create the table and triggers; an old unchained table, or missing triggers on a used table, are reported."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(audit)")]
    if columns and "seq" not in columns:
        raise AuditError(
            f"{path} holds an audit table from an older genguard without a hash chain; "
            "keep it as it is and give the audit log a new file"
        )
    if columns:
        triggers = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'")}
        if triggers != {"audit_no_update", "audit_no_delete"}:
            logger.error(
                "audit log %s: its append-only triggers were removed (found %s); the log may have been edited. "
                "Restoring them; run `genguard audit verify %s`",
                path, sorted(triggers) or "none", path,
            )
    conn.executescript(_SCHEMA + _TRIGGERS)


def append(conn: sqlite3.Connection, encode: Callable[[int, str], tuple[bytes, str]], columns: tuple[object, ...]) -> bytes:
    """Insert the next record after the chain's head, in one immediate transaction; returns its line."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (0, _chain.GENESIS) if row is None else (int(row[0]) + 1, str(row[1]))
        line, chain = encode(seq, prev)
        conn.execute(
            "INSERT INTO audit (seq, time, subject, decision, sha256, pdq, hash, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, *columns, chain, line.decode("utf-8")),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return line


def rows(path: Path) -> Iterator[tuple[int, str, tuple[object, ...], bytes]]:
    """``(seq, hash, query columns, line)`` of every row, in sequence order."""
    with closing(connect(path)) as conn:
        query = f"SELECT seq, hash, {', '.join(COLUMNS)}, record FROM audit ORDER BY seq"
        for row in conn.execute(query):
            yield int(row[0]), str(row[1]), tuple(row[2:-1]), str(row[-1]).encode("utf-8")
