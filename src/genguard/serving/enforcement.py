"""What a screening does about an escalated subject: the :class:`Enforcement` settings and their errors.

=============  ==============================================================================
level          default action
=============  ==============================================================================
``throttle``   refuse: :class:`SubjectThrottledError` (the service answers 429 with ``Retry-After``)
``lock``       block: a blocking verdict with reason ``subject_locked``, without running the models
               (the service answers 403 with that verdict)
=============  ==============================================================================

Both are checked *before* the image is scored, from the subject's state at that moment; the
verdict that is then recorded can raise the level for the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from genguard.errors import GenguardError

__all__ = ["Enforcement", "SubjectRequiredError", "SubjectThrottledError"]

_THROTTLE: Final = ("refuse", "allow")
_LOCK: Final = ("block", "refuse", "allow")


class SubjectRequiredError(GenguardError, ValueError):
    """Raised when a screening with a monitor is asked to screen an image for nobody (no subject)."""


class SubjectThrottledError(GenguardError):
    """Raised when the subject is at ``throttle`` (or ``lock`` with ``lock="refuse"``); retry after ``retry_after_s``."""

    def __init__(self, message: str, *, level: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.level, self.retry_after_s = level, retry_after_s


@dataclass(frozen=True, slots=True)
class Enforcement:
    """How a :class:`~genguard.serving.screening.Screening` enforces the monitor's escalation.

    Parameters
    ----------
    throttle : {"refuse", "allow"}, default "refuse"
        At ``throttle``: raise :class:`SubjectThrottledError`, or go on (the level is only reported).
    lock : {"block", "refuse", "allow"}, default "block"
        At ``lock``: answer with a blocking verdict (reason ``subject_locked``) without scoring,
        raise :class:`SubjectThrottledError`, or go on.
    retry_after_s : int, default 60
        The wait suggested to a refused subject.
    require_subject : bool, default True
        With a monitor, refuse to screen without a subject (:class:`SubjectRequiredError`); a
        caller who leaves the subject out would otherwise never be counted.

    Examples
    --------
    >>> Enforcement(throttle="allow").lock
    'block'
    """

    throttle: Literal["refuse", "allow"] = "refuse"
    lock: Literal["block", "refuse", "allow"] = "block"
    retry_after_s: int = 60
    require_subject: bool = True

    def __post_init__(self) -> None:
        if self.throttle not in _THROTTLE:
            raise ValueError(f"Enforcement.throttle must be one of {_THROTTLE}, got {self.throttle!r}")
        if self.lock not in _LOCK:
            raise ValueError(f"Enforcement.lock must be one of {_LOCK}, got {self.lock!r}")
        if isinstance(self.retry_after_s, bool) or not isinstance(self.retry_after_s, int) or self.retry_after_s < 1:
            raise ValueError(f"Enforcement.retry_after_s must be a positive integer, got {self.retry_after_s!r}")
