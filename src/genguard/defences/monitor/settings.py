"""What the attempt monitor counts and how it escalates: rules, settings, counts, escalations.

Pure data and pure functions; the stores (:mod:`.sqlite`, :mod:`.redis`) and
:class:`~genguard.defences.monitor.AttemptMonitor` build on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from genguard.policy import Policy
from genguard.verdict import Verdict

__all__ = [
    "BLOCKED",
    "LEVELS",
    "NEAR",
    "Escalation",
    "EscalationRule",
    "Level",
    "MonitorSettings",
    "WindowCounts",
    "classify_event",
    "escalate",
]

Level: TypeAlias = Literal["ok", "warn", "throttle", "lock"]
LEVELS: Final[tuple[Level, ...]] = ("ok", "warn", "throttle", "lock")
BLOCKED: Final = 1
NEAR: Final = 2



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
    """``BLOCKED``, ``NEAR`` or None for one verdict; unreadable images (``verdict.error``) count as nothing."""
    if verdict.error is not None:
        return None
    if verdict.blocked:
        return BLOCKED
    if verdict.decision == "review":
        return NEAR
    if policy is not None:
        s = verdict.scores
        # minor is None only when the sexual score was below the review threshold: never a near miss.
        # unknown scores are never a near miss
        if s.minor is not None and s.sexual is not None and s.minor >= policy.minor_threshold - margin and s.sexual >= policy.sexual_threshold - margin:
            return NEAR
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


