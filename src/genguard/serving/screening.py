"""Screening: the Guard plus the defences around it, as one path for every front end.

The CLI, the HTTP service, the scanner and the diffusers integration all call
:meth:`Screening.screen` (or :meth:`Screening.screen_batch`); none of them wires
classify -> audit -> monitor by hand.

Order, per image: the subject's escalation is enforced (:meth:`Screening.admit`,
see :mod:`genguard.serving.enforcement`: a throttled subject is refused, a locked
one gets a blocking verdict without scoring); the Guard scores the image (the
blocklist is the Guard's own stage); the audit record is written first, from the
digests the Guard computed, so it survives whatever happens to the monitor; then
the attempt monitor counts it for the subject(s) and returns the escalation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from genguard._types import ImageInput
from genguard.guard import Guard
from genguard.policy import Policy
from genguard.serving.enforcement import Enforcement, SubjectRequiredError, SubjectThrottledError
from genguard.verdict import Reason, Scores, Verdict

__all__ = ["AuditSink", "AttemptCounter", "Screened", "Screening"]

logger = logging.getLogger(__name__)


@runtime_checkable
class AuditSink(Protocol):
    """What screening needs of an audit log (:class:`genguard.AuditLog` is one)."""

    def record(self, verdict: Verdict, *, subject: str | None = None, source: str | None = None) -> dict[str, Any]: ...


@runtime_checkable
class AttemptCounter(Protocol):
    """What screening needs of an attempt monitor (:class:`genguard.AttemptMonitor` is one)."""

    def record(self, subject: str | None, verdict: Verdict, *, subjects: Mapping[str, str] | None = None,
               policy: Policy | None = None) -> Any: ...

    def status(self, subject: str | None = None, *, subjects: Mapping[str, str] | None = None) -> Any: ...


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
    """Screen images and record them: enforcement, Guard, then audit log, then attempt monitor.

    Parameters
    ----------
    guard : Guard
        Scores the images (with its blocklist, if any). With an audit log it must
        be built with ``hash_frames=True`` (or a blocklist), so that the audit
        record carries the PDQ hashes it computed.
    monitor : AttemptMonitor or None, default None
        Counts blocked verdicts, near misses, probes and requests per subject.
    audit : AuditLog or None, default None
        One record per screened image.
    enforcement : Enforcement or None, default None
        What :meth:`screen` does for a throttled or locked subject, and whether a subject
        is required; None takes ``Enforcement()`` (refuse at throttle, block at lock,
        subject required with a monitor). :meth:`record` alone never enforces.

    Examples
    --------
    >>> screening = Screening(Guard(hash_frames=True), audit=AuditLog("audit.jsonl"))  # doctest: +SKIP
    >>> screening.screen("examples/astronaut.png", subject="user-1").verdict.decision  # doctest: +SKIP
    'allow'
    """

    def __init__(self, guard: Guard, *, monitor: AttemptCounter | None = None, audit: AuditSink | None = None,
                 enforcement: Enforcement | None = None) -> None:
        if audit is not None and not guard.hash_frames:
            raise ValueError("an audit log records PDQ hashes: build the Guard with hash_frames=True (or a blocklist)")
        self.guard = guard
        self.monitor = monitor
        self.audit = audit
        self.enforcement = enforcement if enforcement is not None else Enforcement()

    def __repr__(self) -> str:
        return f"Screening({self.guard!r}, monitor={self.monitor!r}, audit={self.audit!r})"

    def admit(self, *, subject: str | None = None, subjects: Mapping[str, str] | None = None) -> Verdict | None:
        """Enforce the subject's escalation before scoring: None to go on, or a ``subject_locked`` verdict.

        Raises
        ------
        SubjectRequiredError
            A monitor is configured, ``enforcement.require_subject`` is on, and no subject was given.
        SubjectThrottledError
            The subject is at a level whose action is ``"refuse"``.
        MonitorError
            The monitor cannot be read: refuse (fail closed) rather than screen uncounted.
        """
        if self.monitor is None:
            return None
        if subject is None and not subjects:
            if self.enforcement.require_subject:
                raise SubjectRequiredError("a subject is required with an attempt monitor: name who asked for the "
                                           "image (subject=, or subjects={'account': ..., 'ip': ...})")
            return None
        escalation = self.monitor.status(subject, subjects=subjects)
        action = {"throttle": self.enforcement.throttle, "lock": self.enforcement.lock}.get(escalation.level, "allow")
        if action == "refuse":
            raise SubjectThrottledError(f"subject {escalation.subject!r} is at {escalation.level}; retry in "
                                        f"{self.enforcement.retry_after_s} s", level=escalation.level,
                                        retry_after_s=self.enforcement.retry_after_s)
        if action == "block":
            return Verdict("block", Scores(None, None), reasons=(Reason("subject_locked", {"level": escalation.level}),),
                           frame=None, backbone=self.guard.embedder.name, head=self.guard.head.identifier)
        return None

    def screen(self, image: ImageInput, *, subject: str | None = None, subjects: Mapping[str, str] | None = None,
               source: str | None = None) -> Screened:
        """Screen one image for ``subject`` (and/or ``subjects``), enforcing their escalation; see :meth:`admit`."""
        locked = self.admit(subject=subject, subjects=subjects)
        verdict = locked if locked is not None else self.guard.classify(image)
        return self.record(verdict, subject=subject, subjects=subjects, source=source)

    def screen_batch(
        self,
        images: Iterable[ImageInput],
        *,
        subject: str | None = None,
        subjects: Mapping[str, str] | None = None,
        sources: Sequence[str | None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[Screened]:
        """Screen many images for one subject, batched; yields in order as batches finish.

        The escalation is enforced once, before the first image (see :meth:`admit`).
        ``sources`` (same length, optional) labels each image in the audit log.

        Raises
        ------
        AuditError, MonitorError
            A record could not be written: screening stops rather than go on unrecorded.
        SubjectRequiredError, SubjectThrottledError
            See :meth:`admit`.
        """
        locked = self.admit(subject=subject, subjects=subjects)
        verdicts = (locked for _ in images) if locked is not None else self.guard.iter_classify(images, progress=progress)
        for i, verdict in enumerate(verdicts):
            yield self.record(verdict, subject=subject, subjects=subjects,
                              source=None if sources is None else sources[i])

    def classify_batch(self, images: Sequence[ImageInput]) -> list[Verdict]:
        """Score images in one batch without enforcing or recording anything.

        For callers that split the path, as the HTTP service does (it batches images of
        concurrent requests): :meth:`admit` each request first and :meth:`record` each
        verdict after.
        """
        return self.guard.classify_batch(images)

    def record(self, verdict: Verdict, *, subject: str | None = None, subjects: Mapping[str, str] | None = None,
               source: str | None = None) -> Screened:
        """Record a verdict the Guard already gave: the audit log first, then the monitor.

        The audit record names every identity (``subject``, then ``KIND:VALUE`` for each of
        ``subjects``, space-separated). A ``subject_locked`` verdict is audited but not
        counted again by the monitor. Nothing is enforced here.
        """
        who = " ".join(([subject] if subject is not None else []) + [f"{k}:{v}" for k, v in (subjects or {}).items()])
        if self.audit is not None:
            self.audit.record(verdict, subject=who or None, source=source)
        escalation = None
        counted = not any(r.code == "subject_locked" for r in verdict.reasons)
        if self.monitor is not None and (subject is not None or subjects) and counted:
            escalation = self.monitor.record(subject, verdict, subjects=subjects, policy=self.guard.policy)
        return Screened(verdict, escalation, who or None, source)
