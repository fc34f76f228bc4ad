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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from .errors import MonitorError
from .policy import Policy
from .verdict import Verdict

__all__ = ["AttemptMonitor", "Escalation", "EscalationRule", "MonitorError", "MonitorSettings", "WindowCounts"]

logger = logging.getLogger(__name__)

Level: TypeAlias = Literal["ok", "warn", "throttle", "lock"]
LEVELS: Final[tuple[Level, ...]] = ("ok", "warn", "throttle", "lock")
_BLOCKED, _NEAR = 1, 2



@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Reach ``level`` when, within the last ``window_s`` seconds, blocked >= ``blocked`` or near misses >= ``near_misses``.

    A count of ``None`` never fires.
    """

    level: Level
    window_s: float
    blocked: int | None = None
    near_misses: int | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS[1:]:
            raise ValueError(f"EscalationRule.level must be one of {LEVELS[1:]}, got {self.level!r}")
        if not self.window_s > 0:
            raise ValueError(f"EscalationRule.window_s must be positive, got {self.window_s!r}")


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """Thresholds, windows and retention of an :class:`AttemptMonitor`.

    Parameters
    ----------
    rules : tuple of EscalationRule
        Default: ``warn`` at 1 blocked or 3 near misses in an hour, ``throttle`` at 3 blocked or
        10 near misses in an hour, ``lock`` at 5 blocked or 30 near misses in a day.
    near_margin : float, default 0.1
        With a policy, a verdict that is not blocked is a near miss when it is in the review band or
        both scores are within this margin of their block thresholds.
    retention_s : float, default 7 days
        Events older than this are deleted; at least the longest window.
    max_events : int, default 1000
        Most events kept per subject and kind (the oldest go first); above every rule's count.

    Examples
    --------
    >>> MonitorSettings(rules=(EscalationRule("lock", 600, blocked=2),)).windows
    (600.0,)
    """

    rules: tuple[EscalationRule, ...] = (
        EscalationRule("warn", 3600, blocked=1, near_misses=3),
        EscalationRule("throttle", 3600, blocked=3, near_misses=10),
        EscalationRule("lock", 86400, blocked=5, near_misses=30),
    )
    near_margin: float = 0.1
    retention_s: float = 7 * 86400
    max_events: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 <= self.near_margin <= 1.0:
            raise ValueError(f"near_margin must be in [0, 1], got {self.near_margin!r}")
        longest = max((r.window_s for r in self.rules), default=0.0)
        if self.retention_s < longest:
            raise ValueError(f"retention_s ({self.retention_s}) must cover the longest window ({longest}s)")
        top = max([r.blocked or 0 for r in self.rules] + [r.near_misses or 0 for r in self.rules], default=0)
        if self.max_events <= top:
            raise ValueError(f"max_events ({self.max_events}) must exceed the largest rule count ({top})")

    @property
    def windows(self) -> tuple[float, ...]:
        """The distinct rule windows in seconds, shortest first."""
        return tuple(sorted({float(r.window_s) for r in self.rules}))


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Blocked verdicts and near misses of one subject within the last ``window_s`` seconds."""

    window_s: float
    blocked: int
    near_misses: int


@dataclass(frozen=True, slots=True)
class Escalation:
    """Where a subject stands: the level, the counts per window, and the rule that set the level.

    Examples
    --------
    >>> e = Escalation("ok", "user-1", (WindowCounts(3600.0, 0, 0),))
    >>> e.to_dict()["level"], e.at_least("warn")
    ('ok', False)
    """

    level: Level
    subject: str
    counts: tuple[WindowCounts, ...] = ()
    rule: EscalationRule | None = None
    event: str | None = field(default=None)
    """What the recorded verdict counted as: "blocked", "near_miss" or None (nothing; or from :meth:`status`)."""

    def at_least(self, level: Level) -> bool:
        """True when this level is ``level`` or more severe."""
        return LEVELS.index(self.level) >= LEVELS.index(level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        rule = None
        if self.rule is not None:
            r = self.rule
            rule = {"level": r.level, "window_s": r.window_s, "blocked": r.blocked, "near_misses": r.near_misses}
        return {
            "level": self.level,
            "subject": self.subject,
            "event": self.event,
            "counts": [{"window_s": c.window_s, "blocked": c.blocked, "near_misses": c.near_misses} for c in self.counts],
            "rule": rule,
        }


def classify_event(verdict: Verdict, policy: Policy | None, margin: float) -> int | None:
    """``_BLOCKED``, ``_NEAR`` or None for one verdict; unreadable images (``verdict.error``) count as nothing."""
    if verdict.error is not None:
        return None
    if verdict.blocked:
        return _BLOCKED
    if verdict.decision == "review":
        return _NEAR
    if policy is not None:
        s = verdict.scores
        # minor is None only when the sexual score was below the review threshold: never a near miss.
        if s.minor is not None and s.minor >= policy.minor_threshold - margin and s.sexual >= policy.sexual_threshold - margin:
            return _NEAR
    return None


def escalate(subject: str, counts: Sequence[WindowCounts], settings: MonitorSettings, event: str | None) -> Escalation:
    """The most severe rule that fires on ``counts``."""
    by_window = {c.window_s: c for c in counts}
    level: Level = "ok"
    fired: EscalationRule | None = None
    for rule in settings.rules:
        c = by_window[float(rule.window_s)]
        hit = (rule.blocked is not None and c.blocked >= rule.blocked) or (
            rule.near_misses is not None and c.near_misses >= rule.near_misses
        )
        if hit and LEVELS.index(rule.level) > LEVELS.index(level):
            level, fired = rule.level, rule
    return Escalation(level, subject, tuple(counts), fired, event)


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
        from ._monitor_stores import RedisStore, SQLiteStore, Store

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
        event = {_BLOCKED: "blocked", _NEAR: "near_miss"}.get(kind) if kind else None
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
