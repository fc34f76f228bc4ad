"""Attempt monitor: escalate subjects who keep generating blocked or nearly blocked images.

An output filter alone loses to a user who regenerates until something slips
through. :class:`AttemptMonitor` counts, per subject (a user, API key or
session id; or several identities of one request at once), blocked verdicts,
near misses, one-sided probes and requests in sliding windows (an hour, a day,
a week by default) and returns an :class:`Escalation`: ``ok``, ``warn``,
``throttle`` or ``lock``, with the counts that led to it. What to do at each
level is the caller's choice (:class:`genguard.serving.screening.Screening`
enforces it for the service).

State lives in a SQLite file by default (WAL mode, a busy timeout, one
transaction per update: safe for many threads and processes on one host), or
in Redis (``redis://`` URL) for generator processes on several hosts. Neither
loses counts under concurrent writers. Only blocked, near-miss and probe events are
stored (and every request, when a rule counts requests), never images; events
older than ``retention_s`` are pruned. A Redis store keeps its counts across a
restart only with Redis persistence on (``appendonly yes``; see docs/service.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

from genguard.defences.monitor.settings import (
    EVENT_NAMES,
    REQUEST,
    Escalation,
    EscalationRule,
    MonitorSettings,
    WindowCounts,
    classify_event,
    escalate,
    worst,
)
from genguard.errors import MonitorError
from genguard.policy import Policy
from genguard.verdict import Verdict

__all__ = ["AttemptMonitor", "Escalation", "EscalationRule", "MonitorError", "MonitorSettings", "WindowCounts"]

logger = logging.getLogger(__name__)

class AttemptMonitor:
    """Count blocked verdicts, near misses, probes and requests per subject and escalate.

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
        from genguard.defences.monitor.stores import RedisStore, SQLiteStore, Store, public_location

        self._store: Store
        if target.startswith(("redis://", "rediss://", "unix://")):
            self._store = RedisStore(target, key_prefix)
        else:
            self._store = SQLiteStore(target)
        self.location = public_location(target)

    def record(self, subject: str | None, verdict: Verdict, *, subjects: Mapping[str, str] | None = None,
               policy: Policy | None = None) -> Escalation:
        """Count ``verdict`` against the subject(s) and return the most severe escalation after it.

        Blocked verdicts count as blocked; review-band verdicts, and with ``policy`` verdicts whose
        two scores are within ``settings.near_margin`` of the block thresholds, as near misses; with
        ``policy``, one-sided probes (see :class:`MonitorSettings`) as probes. Unreadable images
        count as nothing. When a rule counts requests, every verdict is also a request.

        Parameters
        ----------
        subject : str or None
            Who asked for the image (a user, API key or session id).
        verdict : Verdict
        subjects : mapping of str to str, optional
            Several identities of one request at once, e.g. ``{"account": "a-17", "ip": "203.0.113.9",
            "device": "d-4"}``; each is counted as ``"KIND:VALUE"`` and the request escalates when
            any of them escalates. May be given with or instead of ``subject``.
        policy : Policy, optional
            The thresholds the verdict was decided with (needed for near misses and probes).

        Returns
        -------
        Escalation
            The most severe of the subjects' escalations (its ``subject`` says whose).

        Raises
        ------
        MonitorError
            The store cannot be written.
        ValueError
            No subject, or an empty one.

        Examples
        --------
        >>> import tempfile, os
        >>> from genguard import Verdict, Scores
        >>> mon = AttemptMonitor(os.path.join(tempfile.mkdtemp(), "attempts.sqlite"))
        >>> mon.record(None, Verdict("block", Scores(0.9, 0.9)), subjects={"account": "a-1", "ip": "192.0.2.1"}).subject
        'account:a-1'
        """
        ids = _subject_ids(subject, subjects)
        kind = classify_event(verdict, policy, self.settings.near_margin, self.settings.probe_margin)
        kinds = [kind] if kind is not None else []
        if self.settings.counts_requests:
            kinds.append(REQUEST)
        event = EVENT_NAMES.get(kind) if kind is not None else None
        per_subject = self._store.update(ids, kinds, self.clock(), self.settings)
        escalation = worst([escalate(s, c, self.settings, event) for s, c in zip(ids, per_subject)])
        if escalation.level != "ok":
            logger.info("subject %r at %s after %s", escalation.subject, escalation.level, event)
        return escalation

    def status(self, subject: str | None = None, *, subjects: Mapping[str, str] | None = None) -> Escalation:
        """The most severe escalation of the subject(s) now, without recording anything."""
        ids = _subject_ids(subject, subjects)
        per_subject = self._store.update(ids, [], self.clock(), self.settings)
        return worst([escalate(s, c, self.settings, None) for s, c in zip(ids, per_subject)])

    def close(self) -> None:
        """Close the connections this monitor opened."""
        self._store.close()

    def __enter__(self) -> AttemptMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AttemptMonitor({self.location!r})"


def _subject_ids(subject: str | None, subjects: Mapping[str, str] | None) -> list[str]:
    """The store's subject ids: ``subject`` as it is, and ``KIND:VALUE`` for each of ``subjects``."""
    ids = [] if subject is None else [subject]
    for kind, value in (subjects or {}).items():
        if not (isinstance(kind, str) and kind and isinstance(value, str) and value):
            raise ValueError(f"subjects must map non-empty strings to non-empty strings, got {kind!r}: {value!r}")
        ids.append(f"{kind}:{value}")
    if not ids or not all(isinstance(s, str) and s for s in ids):
        raise ValueError(f"give a non-empty subject or a subjects mapping, got {subject!r} and {subjects!r}")
    return ids
