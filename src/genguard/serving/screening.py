"""Screening: the Guard plus the defences around it, as one path for every front end.

The CLI, the HTTP service, the scanner and the diffusers integration all call
:meth:`Screening.screen` (or :meth:`Screening.screen_batch`); none of them wires
classify -> audit -> monitor by hand.

Order, per image: the Guard scores it (the blocklist is the Guard's own stage);
the audit record is written first, from the digests the Guard computed, so it
survives whatever happens to the monitor; then the attempt monitor counts it
for the subject and returns the escalation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from genguard._types import ImageInput
from genguard.guard import Guard
from genguard.policy import Policy
from genguard.verdict import Verdict

__all__ = ["AuditSink", "AttemptCounter", "Screened", "Screening"]

logger = logging.getLogger(__name__)


@runtime_checkable
class AuditSink(Protocol):
    """What screening needs of an audit log (:class:`genguard.AuditLog` is one)."""

    def record(self, verdict: Verdict, *, subject: str | None = None, source: str | None = None) -> dict[str, Any]: ...


@runtime_checkable
class AttemptCounter(Protocol):
    """What screening needs of an attempt monitor (:class:`genguard.AttemptMonitor` is one)."""

    def record(self, subject: str, verdict: Verdict, *, policy: Policy | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Screened:
    """One screened image: the verdict, and the subject's escalation when a monitor counted it.

    ``escalation`` is the monitor's :class:`~genguard.defences.monitor.Escalation`
    (None without a monitor or a subject).
    """

    verdict: Verdict
    escalation: Any = None
    subject: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the verdict's keys, plus ``escalation`` when there is one."""
        out = self.verdict.to_dict()
        if self.escalation is not None:
            out["escalation"] = self.escalation.to_dict()
        return out


class Screening:
    """Screen images and record them: Guard, then audit log, then attempt monitor.

    Parameters
    ----------
    guard : Guard
        Scores the images (with its blocklist, if any). With an audit log it must
        be built with ``hash_frames=True`` (or a blocklist), so that the audit
        record carries the PDQ hashes it computed.
    monitor : AttemptMonitor or None, default None
        Counts blocked verdicts and near misses per subject.
    audit : AuditLog or None, default None
        One record per screened image.

    Examples
    --------
    >>> screening = Screening(Guard(hash_frames=True), audit=AuditLog("audit.jsonl"))  # doctest: +SKIP
    >>> screening.screen("examples/astronaut.png", subject="user-1").verdict.decision  # doctest: +SKIP
    'allow'
    """

    def __init__(self, guard: Guard, *, monitor: AttemptCounter | None = None, audit: AuditSink | None = None) -> None:
        if audit is not None and not guard.hash_frames:
            raise ValueError("an audit log records PDQ hashes: build the Guard with hash_frames=True (or a blocklist)")
        self.guard = guard
        self.monitor = monitor
        self.audit = audit

    def __repr__(self) -> str:
        return f"Screening({self.guard!r}, monitor={self.monitor!r}, audit={self.audit!r})"

    def screen(self, image: ImageInput, *, subject: str | None = None, source: str | None = None) -> Screened:
        """Screen one image for ``subject``; see :meth:`screen_batch`."""
        return self.record(self.guard.classify(image), subject=subject, source=source)

    def screen_batch(
        self,
        images: Iterable[ImageInput],
        *,
        subject: str | None = None,
        sources: Sequence[str | None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[Screened]:
        """Screen many images for one subject, batched; yields in order as batches finish.

        ``sources`` (same length, optional) labels each image in the audit log.

        Raises
        ------
        AuditError, MonitorError
            A record could not be written: screening stops rather than go on unrecorded.
        """
        for i, verdict in enumerate(self.guard.iter_classify(images, progress=progress)):
            yield self.record(verdict, subject=subject, source=None if sources is None else sources[i])

    def record(self, verdict: Verdict, *, subject: str | None = None, source: str | None = None) -> Screened:
        """Record a verdict the Guard already gave: the audit log first, then the monitor."""
        if self.audit is not None:
            self.audit.record(verdict, subject=subject, source=source)
        escalation = None
        if self.monitor is not None and subject is not None:
            escalation = self.monitor.record(subject, verdict, policy=self.guard.policy)
        return Screened(verdict, escalation, subject, source)
