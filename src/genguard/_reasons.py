"""From scores to a verdict: the worst frame decides, and every reason says why.

Pure functions the pipeline calls once per image; the reason codes are listed
in :data:`genguard.verdict.REASON_CODES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from genguard._types import Decision, OnError
from genguard.embedders.base import ImageEmbedding
from genguard.errors import GenguardError
from genguard.heads.head import ImageScores
from genguard.imageio.loader import LoadedImage
from genguard.policy import Policy
from genguard.verdict import Reason, ReasonCode, Scores, Verdict

__all__ = ["error_verdict", "image_verdict"]

_RANK: Final = {"allow": 0, "review": 1, "block": 2}
_VIEW_ORDER: Final = ("", "over_white", "over_black", "colour")


def error_verdict(error: GenguardError, on_error: OnError, *, backbone: str, head: str) -> Verdict:
    """The verdict of an unreadable image: ``on_error`` decides, fail closed by default; the scores are unknown."""
    decision: Decision = "allow" if on_error == "allow" else "block"
    why = f"unknown: nothing was scored, the image could not be read ({type(error).__name__}); on_error={on_error!r} decides"
    return Verdict(
        decision=decision,
        scores=Scores(None, None),
        reasons=(Reason("load_error", {"type": type(error).__name__, "on_error": on_error, "scores": why}),),
        error=str(error),
        frame=None,
        backbone=backbone,
        head=head,
    )


def _rank_key(decision: Decision, s: ImageScores) -> tuple[int, float]:
    minor = 0.0 if s.minor is None else s.minor
    return (_RANK[decision], min(minor, s.sexual))


def image_verdict(
    loaded: LoadedImage,
    embeddings: Sequence[ImageEmbedding],
    scores: Sequence[ImageScores],
    policy: Policy,
    *,
    match: Mapping[str, Any] | None,
    pdq: tuple[str, ...],
    face_based: bool,
    backbone: str,
    head: str,
) -> Verdict:
    """The verdict of one readable image from its frames' embeddings and scores."""
    decisions = [policy.decide(s.minor, s.sexual) for s in scores]
    worst = max(range(len(scores)), key=lambda i: _rank_key(decisions[i], scores[i]))
    decision, s, emb = decisions[worst], scores[worst], embeddings[worst]
    frame = loaded.frame_indices[worst]
    views = loaded.views
    reasons: list[Reason] = []
    for face, p in zip(emb.faces, s.face_minor):
        code: ReasonCode = "minor_face" if p >= policy.review_minor else "face"
        reasons.append(
            Reason(code, {"score": round(p, 4), "age": None if face.age is None else round(face.age, 1),
                          "box": list(face.box), "detector": face.detector, "frame": frame})
        )
    if s.minor is None:
        reasons.append(Reason("minor_skipped", {"sexual": round(s.sexual, 4), "review_sexual": policy.review_sexual, "frame": frame}))
    elif face_based and not emb.faces:
        reasons.append(Reason("no_face", {"minor": s.minor, "frame": frame}))
    if s.sexual >= policy.review_sexual:
        reasons.append(Reason("sexual_content", {"score": round(s.sexual, 4), **_jsonable(emb.details), "frame": frame}))
    if decision in ("block", "review"):
        minor = None if s.minor is None else round(s.minor, 4)
        reasons.append(Reason("both_high" if decision == "block" else "review_band", {"minor": minor, "sexual": round(s.sexual, 4)}))
    if loaded.n_frames > 1:
        reasons.append(Reason("frames", {"total": loaded.n_frames, "scored": loaded.distinct_frames, "deciding": frame}))
    if any(views):
        scored = sorted(set(views), key=_VIEW_ORDER.index)
        reasons.append(Reason("alpha", {"views": [v or "opaque" for v in scored], "deciding": views[worst] or "opaque", "frame": frame}))
    if match is not None:  # a listed image: its bank's action (block, or review), whatever the scores
        if match.get("action", "block") == "block":
            decision = "block"
        elif decision == "allow":
            decision = "review"
        k = int(match["frame"])
        reasons.append(Reason("hash_match", {**match, "frame": loaded.frame_indices[k], "view": views[k] or "opaque"}))
    return Verdict(
        decision=decision,
        scores=Scores(s.minor, s.sexual),
        reasons=tuple(reasons),
        error=None,
        frame=frame,
        backbone=backbone,
        head=head,
        sha256=loaded.sha256,
        pdq=pdq,
    )


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in dict(details).items()}
