"""What the attempt monitor counts and how it escalates: rules, settings, counts, escalations.

Pure data and pure functions; the stores (:mod:`.stores`) and
:class:`~genguard.defences.monitor.AttemptMonitor` build on them.

Four kinds of event are counted per subject:

``blocked``    a blocked verdict;
``near_miss``  a verdict in the review band, or with both scores within ``near_margin`` of
               their block thresholds;
``probe``      one-sided probing: one score within ``probe_margin`` of its block threshold
               (or past it) while the other is within ``probe_margin`` of its review threshold
               (or past it), and the verdict is neither blocked nor a near miss;
``request``    every recorded verdict (stored only when a rule counts requests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from genguard.policy import Policy
from genguard.verdict import Verdict

__all__ = [
    "BLOCKED",
    "KINDS",
    "LEVELS",
    "NEAR",
    "PROBE",
    "REQUEST",
    "Escalation",
    "EscalationRule",
    "Level",
    "MonitorSettings",
    "WindowCounts",
    "classify_event",
    "escalate",
    "worst",
]

Level: TypeAlias = Literal["ok", "warn", "throttle", "lock"]
LEVELS: Final[tuple[Level, ...]] = ("ok", "warn", "throttle", "lock")
BLOCKED: Final = 1
NEAR: Final = 2
PROBE: Final = 3
REQUEST: Final = 4
KINDS: Final = (BLOCKED, NEAR, PROBE, REQUEST)
EVENT_NAMES: Final = {BLOCKED: "blocked", NEAR: "near_miss", PROBE: "probe"}
_DAY: Final = 86400.0


@dataclass(frozen=True, slots=True)
class EscalationRule:
    """Reach ``level`` when, within the last ``window_s`` seconds, any count reaches its limit.

    The counts are ``blocked`` verdicts, ``near_misses``, one-sided ``probes`` and all
    ``requests``; a limit of ``None`` never fires.
    """

    level: Level
    window_s: float
    blocked: int | None = None
    near_misses: int | None = None
    probes: int | None = None
    requests: int | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS[1:]:
            raise ValueError(f"EscalationRule.level must be one of {LEVELS[1:]}, got {self.level!r}")
        if not self.window_s > 0:
            raise ValueError(f"EscalationRule.window_s must be positive, got {self.window_s!r}")
        for name in ("blocked", "near_misses", "probes", "requests"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"EscalationRule.{name} must be a positive integer or None, got {value!r}")

    def limits(self) -> tuple[int | None, int | None, int | None, int | None]:
        """The limits in the order of :data:`KINDS`."""
        return self.blocked, self.near_misses, self.probes, self.requests

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"level": self.level, "window_s": self.window_s, "blocked": self.blocked,
                "near_misses": self.near_misses, "probes": self.probes, "requests": self.requests}


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """Thresholds, windows and retention of an :class:`AttemptMonitor`.

    Parameters
    ----------
    rules : tuple of EscalationRule
        Default, per subject:

        ========  =======  =======  ===========  ======  ========
        level     window   blocked  near misses  probes  requests
        ========  =======  =======  ===========  ======  ========
        warn      1 hour   1        3            5
        throttle  1 hour   3        10           20      1000
        lock      1 day    5        30           60
        throttle  7 days   10       60           150
        lock      7 days   20       150          400
        ========  =======  =======  ===========  ======  ========
    near_margin : float, default 0.1
        With a policy, a verdict that is not blocked is a near miss when it is in the review band or
        both scores are within this margin of their block thresholds.
    probe_margin : float, default 0.1
        With a policy, the margin of one-sided probing (see the module docstring).
    retention_s : float, default 7 days
        Events older than this are deleted; at least the longest window.
    max_events : int, default 2000
        Most events kept per subject and kind (the oldest go first); above every rule's count.

    Examples
    --------
    >>> MonitorSettings(rules=(EscalationRule("lock", 600, blocked=2),)).windows
    (600.0,)
    """

    rules: tuple[EscalationRule, ...] = (
        EscalationRule("warn", 3600, blocked=1, near_misses=3, probes=5),
        EscalationRule("throttle", 3600, blocked=3, near_misses=10, probes=20, requests=1000),
        EscalationRule("lock", _DAY, blocked=5, near_misses=30, probes=60),
        EscalationRule("throttle", 7 * _DAY, blocked=10, near_misses=60, probes=150),
        EscalationRule("lock", 7 * _DAY, blocked=20, near_misses=150, probes=400),
    )
    near_margin: float = 0.1
    probe_margin: float = 0.1
    retention_s: float = 7 * _DAY
    max_events: int = 2000

    def __post_init__(self) -> None:
        for name in ("near_margin", "probe_margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        longest = max((r.window_s for r in self.rules), default=0.0)
        if self.retention_s < longest:
            raise ValueError(f"retention_s ({self.retention_s}) must cover the longest window ({longest}s)")
        top = max([n or 0 for r in self.rules for n in r.limits()], default=0)
        if self.max_events <= top:
            raise ValueError(f"max_events ({self.max_events}) must exceed the largest rule count ({top})")

    @property
    def windows(self) -> tuple[float, ...]:
        """The distinct rule windows in seconds, shortest first."""
        return tuple(sorted({float(r.window_s) for r in self.rules}))

    @property
    def counts_requests(self) -> bool:
        """True when a rule limits requests, so every verdict is stored as a request event."""
        return any(r.requests is not None for r in self.rules)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """What one subject did within the last ``window_s`` seconds."""

    window_s: float
    blocked: int
    near_misses: int
    probes: int = 0
    requests: int = 0

    def values(self) -> tuple[int, int, int, int]:
        """The counts in the order of :data:`KINDS`."""
        return self.blocked, self.near_misses, self.probes, self.requests


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
    """What the recorded verdict counted as: "blocked", "near_miss", "probe" or None (nothing; or from ``status``)."""

    def at_least(self, level: Level) -> bool:
        """True when this level is ``level`` or more severe."""
        return LEVELS.index(self.level) >= LEVELS.index(level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "level": self.level,
            "subject": self.subject,
            "event": self.event,
            "counts": [{"window_s": c.window_s, "blocked": c.blocked, "near_misses": c.near_misses,
                        "probes": c.probes, "requests": c.requests} for c in self.counts],
            "rule": None if self.rule is None else self.rule.to_dict(),
        }


def classify_event(verdict: Verdict, policy: Policy | None, margin: float, probe_margin: float | None = None) -> int | None:
    """``BLOCKED``, ``NEAR``, ``PROBE`` or None for one verdict; unreadable images (``verdict.error``) count as nothing.

    Without a policy only the decision counts (blocked, or review as a near miss).
    """
    if verdict.error is not None:
        return None
    if verdict.blocked:
        return BLOCKED
    if verdict.decision == "review":
        return NEAR
    s = verdict.scores
    # minor is None when the face stage was skipped; both are None (unknown) for an unreadable image.
    if policy is None or s.minor is None or s.sexual is None:
        return None
    if s.minor >= policy.minor_threshold - margin and s.sexual >= policy.sexual_threshold - margin:
        return NEAR
    if probe_margin is not None:
        minor_high = s.minor >= policy.minor_threshold - probe_margin
        sexual_high = s.sexual >= policy.sexual_threshold - probe_margin
        if (minor_high and s.sexual >= policy.review_sexual - probe_margin) or (
            sexual_high and s.minor >= policy.review_minor - probe_margin
        ):
            return PROBE
    return None


def escalate(subject: str, counts: Sequence[WindowCounts], settings: MonitorSettings, event: str | None) -> Escalation:
    """The most severe rule that fires on ``counts`` (the first such rule on a tie)."""
    by_window = {c.window_s: c for c in counts}
    level: Level = "ok"
    fired: EscalationRule | None = None
    for rule in settings.rules:
        values = by_window[float(rule.window_s)].values()
        hit = any(limit is not None and value >= limit for limit, value in zip(rule.limits(), values))
        if hit and LEVELS.index(rule.level) > LEVELS.index(level):
            level, fired = rule.level, rule
    return Escalation(level, subject, tuple(counts), fired, event)


def worst(escalations: Sequence[Escalation]) -> Escalation:
    """The most severe of several subjects' escalations (the first on a tie)."""
    if not escalations:
        raise ValueError("no escalations to compare")
    return max(escalations, key=lambda e: LEVELS.index(e.level))
