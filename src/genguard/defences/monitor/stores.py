"""Stores of the attempt monitor: SQLite (default) and Redis.

Both add the events of one verdict for all its subjects and count their windows in
one transaction, and both only ever insert rows or members (never
read-modify-write a counter), so concurrent writers cannot lose counts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from genguard.defences.monitor.settings import KINDS, MonitorSettings, WindowCounts
from genguard.errors import MonitorError

__all__ = ["RedisStore", "SQLiteStore", "Store", "public_location"]

_KEY_NAMES = {1: "blocked", 2: "near", 3: "probe", 4: "request"}


class Store:
    """Where events live: :meth:`update` adds ``kinds`` for every subject and counts their windows, atomically."""

    def update(self, subjects: Sequence[str], kinds: Sequence[int], now: float,
               settings: MonitorSettings) -> list[list[WindowCounts]]:
        """Add one event of each of ``kinds`` for each subject; the window counts of each subject, in order."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SQLiteStore(Store):
    """Events in one SQLite table; one connection per thread and process, one write transaction per update."""

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS attempts (id INTEGER PRIMARY KEY, subject TEXT NOT NULL, "
        "ts REAL NOT NULL, kind INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS attempts_subject_ts ON attempts (subject, ts)",
        "CREATE INDEX IF NOT EXISTS attempts_subject_kind ON attempts (subject, kind)",
        "CREATE INDEX IF NOT EXISTS attempts_ts ON attempts (ts)",
    )

    def __init__(self, path: str, timeout_s: float = 30.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._setup(self._connection())  # fail early on a bad path; WAL and the schema, once

    def _setup(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL (it persists in the file) and create the schema.

        Switching the journal mode needs the database to itself, and SQLite answers
        "locked" at once rather than waiting, so a monitor opened while another
        process is setting up retries until ``timeout_s``.
        """
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                for statement in self._SCHEMA:
                    conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise MonitorError(f"cannot set up the attempt monitor database {self.path!r}: {exc}") from exc
                time.sleep(0.05)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise MonitorError(f"cannot open the attempt monitor database {self.path!r}: {exc}") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._all.append(conn)
        return conn

    def update(self, subjects: Sequence[str], kinds: Sequence[int], now: float,
               settings: MonitorSettings) -> list[list[WindowCounts]]:
        windows = settings.windows
        conn = self._connection()
        cols = ", ".join(f"COALESCE(SUM(kind = {k} AND ts > ?), 0)" for _ in windows for k in KINDS)
        params = [now - w for w in windows for _ in KINDS]
        out = []
        try:
            conn.execute("BEGIN IMMEDIATE" if kinds else "BEGIN")
            if kinds:
                conn.execute("DELETE FROM attempts WHERE ts < ?", (now - settings.retention_s,))
            for subject in subjects:
                for kind in kinds:
                    conn.execute("INSERT INTO attempts (subject, ts, kind) VALUES (?, ?, ?)", (subject, now, kind))
                    conn.execute(
                        "DELETE FROM attempts WHERE subject = ? AND kind = ? AND id < (SELECT id FROM attempts "
                        "WHERE subject = ? AND kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                        (subject, kind, subject, kind, settings.max_events - 1),
                    )
                row = conn.execute(
                    f"SELECT {cols} FROM attempts WHERE subject = ? AND ts > ?", (*params, subject, now - windows[-1])
                ).fetchone()
                out.append(_counts(windows, [int(v) for v in row]))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MonitorError(f"attempt monitor database {self.path!r}: {exc}") from exc
        return out

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # opened in another thread that is gone
                    pass
            self._all.clear()
        self._local = threading.local()


class RedisStore(Store):
    """Events as members of ``PREFIX{subject}:{kind}`` sorted sets scored by time.

    Each update is one transaction (``MULTI``/``EXEC``): add the event with a unique member,
    trim by age and by count, refresh the key's expiry, count the windows. Concurrent writers
    never overwrite each other, so no count is lost.
    """

    def __init__(self, url: str, key_prefix: str, timeout_s: float = 5.0) -> None:
        try:
            import redis
        except ImportError as exc:
            raise MonitorError("the Redis backend needs the redis package: pip install 'genguard[redis]'") from exc
        self._redis_error: type[Exception] = redis.RedisError
        self.location = public_location(url)
        self.prefix = key_prefix
        try:
            self.client: Any = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            self.client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise MonitorError(f"cannot reach Redis at {self.location!r}: {type(exc).__name__}: {exc}") from exc

    def _key(self, subject: str, kind: int) -> str:
        return f"{self.prefix}{subject}:{_KEY_NAMES[kind]}"

    def update(self, subjects: Sequence[str], kinds: Sequence[int], now: float,
               settings: MonitorSettings) -> list[list[WindowCounts]]:
        windows = settings.windows
        try:
            pipe = self.client.pipeline(transaction=True)
            for subject in subjects:
                for kind in kinds:
                    key = self._key(subject, kind)
                    pipe.zadd(key, {uuid.uuid4().hex: now})
                    pipe.zremrangebyscore(key, "-inf", f"({now - settings.retention_s!r}")
                    pipe.zremrangebyrank(key, 0, -(settings.max_events + 1))
                    pipe.expire(key, int(settings.retention_s) + 1)
                for w in windows:
                    for k in KINDS:
                        pipe.zcount(self._key(subject, k), f"({now - w!r}", "+inf")
            results = pipe.execute()
        except self._redis_error as exc:
            raise MonitorError(f"attempt monitor Redis {self.location!r}: {type(exc).__name__}: {exc}") from exc
        out, i = [], 0
        for _ in subjects:
            i += 4 * len(kinds)
            n = len(windows) * len(KINDS)
            out.append(_counts(windows, [int(v) for v in results[i : i + n]]))
            i += n
        return out

    def close(self) -> None:
        self.client.close()


def _counts(windows: Sequence[float], flat: Sequence[int]) -> list[WindowCounts]:
    """Window counts from ``len(windows) * len(KINDS)`` numbers, window by window, in the order of KINDS."""
    k = len(KINDS)
    return [WindowCounts(w, *flat[k * i : k * i + k]) for i, w in enumerate(windows)]


def public_location(url: str) -> str:
    """A store URL without its credentials (``redis://:PASSWORD@host`` becomes ``redis://***@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
