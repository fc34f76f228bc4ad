"""Attempt monitor: escalate subjects who keep generating blocked or nearly blocked images.

An output filter alone loses to a user who regenerates until something slips
through. :class:`AttemptMonitor` counts, per subject (a user, API key or
session id), blocked verdicts and near misses in sliding windows and returns
an :class:`Escalation`: ``ok``, ``warn``, ``throttle`` or ``lock``, with the
counts that led to it. What to do at each level is the caller's choice.

State lives in a SQLite file by default (WAL mode, a busy timeout, one
transaction per update: safe for many threads and processes on one host), or
in Redis (``redis://`` URL) for generator processes on several hosts. Neither
loses counts under concurrent writers. Only blocked and near-miss events are
stored, never images; events older than ``retention_s`` are pruned.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from typing import Any

from genguard.defences.monitor.settings import (
    BLOCKED,
    NEAR,
    Escalation,
    EscalationRule,
    Level,
    MonitorSettings,
    WindowCounts,
    classify_event,
    escalate,
)
from genguard.errors import MonitorError
from genguard.policy import Policy
from genguard.verdict import Verdict

__all__ = ["AttemptMonitor", "Escalation", "EscalationRule", "MonitorError", "MonitorSettings", "WindowCounts"]

logger = logging.getLogger(__name__)

class AttemptMonitor:
    """Count blocked verdicts and near misses per subject and escalate.

    Parameters
    ----------
    path_or_url : str or PathLike
        A SQLite file (created if missing), or a ``redis://`` / ``rediss://`` / ``unix://`` URL.
    settings : MonitorSettings, optional
        Rules, windows, near-miss margin and retention.
    clock : callable, default time.time
        Seconds since the epoch (injectable for tests).
    key_prefix : str, default "genguard:attempts:"
        Prefix of the Redis keys.

    Thread and process safe: share one monitor between threads, open one per process.

    Examples
    --------
    >>> import tempfile, os
    >>> from genguard import Verdict, Scores
    >>> mon = AttemptMonitor(os.path.join(tempfile.mkdtemp(), "attempts.sqlite"))
    >>> mon.record("user-1", Verdict("block", Scores(0.9, 0.9))).level
    'warn'
    >>> mon.status("user-2").level
    'ok'
    """

    def __init__(
        self,
        path_or_url: str | os.PathLike[str],
        *,
        settings: MonitorSettings | None = None,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "genguard:attempts:",
    ) -> None:
        self.settings = settings if settings is not None else MonitorSettings()
        self.clock = clock
        target = os.fspath(path_or_url)
        from genguard.defences.monitor.stores import RedisStore, SQLiteStore, Store

        self._store: Store
        if target.startswith(("redis://", "rediss://", "unix://")):
            self._store = RedisStore(target, key_prefix)
        else:
            self._store = SQLiteStore(target)
        self.location = target

    def record(self, subject: str, verdict: Verdict, *, policy: Policy | None = None) -> Escalation:
        """Count ``verdict`` against ``subject`` and return the subject's escalation after it.

        Blocked verdicts count as blocked; review-band verdicts, and with ``policy`` verdicts whose
        two scores are within ``settings.near_margin`` of the block thresholds, as near misses.
        Others (and unreadable images) are not stored.

        Raises
        ------
        MonitorError
            The store cannot be written.
        """
        if not isinstance(subject, str) or not subject:
            raise ValueError(f"subject must be a non-empty string, got {subject!r}")
        kind = classify_event(verdict, policy, self.settings.near_margin)
        counts = self._store.update(subject, kind, self.clock(), self.settings)
        event = {BLOCKED: "blocked", NEAR: "near_miss"}.get(kind) if kind else None
        escalation = escalate(subject, counts, self.settings, event)
        if escalation.level != "ok":
            logger.info("subject %r at %s after %s", subject, escalation.level, event)
        return escalation

    def status(self, subject: str) -> Escalation:
        """The subject's escalation now, without recording anything."""
        counts = self._store.update(subject, None, self.clock(), self.settings)
        return escalate(subject, counts, self.settings, None)

    def close(self) -> None:
        """Close the connections this monitor opened."""
        self._store.close()

    def __enter__(self) -> AttemptMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AttemptMonitor({self.location!r})"
