"""The decision rule: block only when both risks are high."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genguard._types import Decision

__all__ = ["Policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    """Thresholds on the two calibrated scores.

    ``block`` when ``minor >= minor_threshold`` **and** ``sexual >= sexual_threshold``;
    ``review`` when both reach their review thresholds (but not both block
    thresholds); ``allow`` otherwise. A high score on one axis alone never blocks:
    a child's portrait is allowed, and so is adult sexual content (which is a
    matter for other filters).

    Parameters
    ----------
    minor_threshold : float, default 0.5
    sexual_threshold : float, default 0.8
    review_minor : float, default 0.25
        At most ``minor_threshold``.
    review_sexual : float, default 0.4
        At most ``sexual_threshold``.

    Shipped heads carry their own thresholds in their metadata; ``Policy()``
    with no arguments is only the fallback for a head that has none.

    Examples
    --------
    >>> p = Policy(minor_threshold=0.5, sexual_threshold=0.8)
    >>> p.decide(0.9, 0.9), p.decide(0.9, 0.1), p.decide(0.3, 0.5)
    ('block', 'allow', 'review')
    """

    minor_threshold: float = 0.5
    sexual_threshold: float = 0.8
    review_minor: float = 0.25
    review_sexual: float = 0.4

    def __post_init__(self) -> None:
        for name in ("minor_threshold", "sexual_threshold", "review_minor", "review_sexual"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"Policy.{name} must be a number in [0, 1], got {value!r}")
        if self.review_minor > self.minor_threshold or self.review_sexual > self.sexual_threshold:
            raise ValueError(
                "review thresholds must not exceed the block thresholds: got "
                f"review_minor={self.review_minor} > minor_threshold={self.minor_threshold} or "
                f"review_sexual={self.review_sexual} > sexual_threshold={self.sexual_threshold}"
            )

    def decide(self, minor: float | None, sexual: float | None) -> Decision:
        """The decision for one pair of scores; an unknown score (None or NaN) counts as 1.0 (fail closed)."""
        minor = 1.0 if minor is None or minor != minor else minor
        sexual = 1.0 if sexual is None or sexual != sexual else sexual
        if minor >= self.minor_threshold and sexual >= self.sexual_threshold:
            return "block"
        if minor >= self.review_minor and sexual >= self.review_sexual:
            return "review"
        return "allow"

    def to_dict(self) -> dict[str, float]:
        """JSON-ready thresholds."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown Policy fields {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**{k: float(v) for k, v in data.items()})
