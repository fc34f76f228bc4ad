"""What a Guard returns for each image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, get_args

from genguard._types import Decision

__all__ = ["REASON_CODES", "Reason", "ReasonCode", "Scores", "Verdict"]

ReasonCode: TypeAlias = Literal[
    "minor_face",
    "face",
    "no_face",
    "minor_skipped",
    "sexual_content",
    "both_high",
    "review_band",
    "hash_match",
    "load_error",
    "frames",
    "subject_locked",
    "alpha",
]
"""Every reason code a verdict can carry; :class:`Reason` documents each one."""

REASON_CODES: Final[tuple[str, ...]] = get_args(ReasonCode)

_DECISIONS = ("allow", "review", "block")


@dataclass(frozen=True, slots=True)
class Scores:
    """Calibrated risk scores in [0, 1]: a person under 18 is shown; the content is sexual.

    ``minor`` is a float for every scored image by default. It is None only with the
    throughput option ``Guard(skip_minor_below_review=True)``, for a frame whose sexual
    score is below the review threshold (where no minor score can change the decision).
    Both are None when nothing was scored because the image could not be read
    (``Verdict.error`` says why): unknown, never a made-up 1.0 or 0.0.
    """

    minor: float | None
    sexual: float | None


@dataclass(frozen=True, slots=True)
class Reason:
    """One machine-readable reason, with its details.

    Codes
    -----
    ``minor_face``      a face scored as under 18 (``age``, ``score``, ``box``, ``frame``)
    ``face``            a face found and scored as adult (same details)
    ``no_face``         no face found, so the minor score is the head's no-face value
    ``minor_skipped``   only with ``skip_minor_below_review=True``: the minor score was not computed,
                        since the sexual score alone decides "allow"
    ``sexual_content``  the sexual score and what drove it (``open_nsfw``, ``nudenet``)
    ``both_high``       both scores at or above their block thresholds
    ``review_band``     both scores at or above their review thresholds
    ``hash_match``      the image matched a listed PDQ hash (``distance``, ``bank``, ``label``, ``variant``)
    ``load_error``      the image could not be read; see ``Verdict.error``
    ``frames``          an animation: frames in the file (``total``), distinct frames scored, which decided
    ``alpha``           a frame with transparency: the ``views`` scored (``over_white``, ``over_black``,
                        ``colour``) and the ``deciding`` one
    ``subject_locked``  not scored: the subject is locked by the attempt monitor (``level``); see
                        :class:`genguard.serving.screening.Screening`
    """

    code: ReasonCode
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in REASON_CODES:
            raise ValueError(f"unknown reason code {self.code!r}; known: {', '.join(REASON_CODES)}")

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, **dict(self.detail)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one image, its scores and why.

    Attributes
    ----------
    decision : {"allow", "review", "block"}
    scores : Scores
        For an animation, the scores of the deciding (worst) frame.
    reasons : tuple of Reason
    error : str or None
        Why the image could not be read; the decision then follows ``on_error``.
    frame : int or None
        Index of the deciding frame in the source, None for unreadable input.
    backbone : str
        The backbone that produced the embedding.
    head : str
        Identifier of the head that produced the scores.
    sha256 : str or None
        sha256 of the input as given (see :attr:`genguard.LoadedImage.sha256`); None when unreadable.
    pdq : tuple of str
        PDQ hashes (hex) of the scored frames, when the Guard computed them (a blocklist, or
        ``hash_frames=True``); empty otherwise.

    Examples
    --------
    >>> v = Verdict("allow", Scores(0.02, 0.01))
    >>> v.blocked, Verdict.from_dict(v.to_dict()) == v
    (False, True)
    """

    decision: Decision
    scores: Scores
    reasons: tuple[Reason, ...] = ()
    error: str | None = None
    frame: int | None = 0
    backbone: str = ""
    head: str = ""
    sha256: str | None = None
    pdq: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.decision not in _DECISIONS:
            raise ValueError(f"decision must be one of {_DECISIONS}, got {self.decision!r}")

    @property
    def blocked(self) -> bool:
        """True when the decision is ``"block"``."""
        return self.decision == "block"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :meth:`from_dict` reverses it."""
        return {
            "decision": self.decision,
            "blocked": self.blocked,
            "scores": {"minor": self.scores.minor, "sexual": self.scores.sexual},
            "reasons": [r.to_dict() for r in self.reasons],
            "error": self.error,
            "frame": self.frame,
            "backbone": self.backbone,
            "head": self.head,
            "sha256": self.sha256,
            "pdq": list(self.pdq),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Rebuild a verdict from :meth:`to_dict` output."""
        reasons = tuple(
            Reason(r["code"], {k: v for k, v in r.items() if k != "code"}) for r in data.get("reasons", ())
        )  # an unknown code raises ValueError
        scores = data["scores"]
        return cls(
            decision=data["decision"],
            scores=Scores(*(None if scores[k] is None else float(scores[k]) for k in ("minor", "sexual"))),
            reasons=reasons,
            error=data.get("error"),
            frame=data.get("frame"),
            backbone=data.get("backbone", ""),
            head=data.get("head", ""),
            sha256=data.get("sha256"),
            pdq=tuple(data.get("pdq", ())),
        )
