"""The wire schema of the HTTP service: request body description and response models (see :mod:`genguard.serving.server`).

By default a response discloses the decision and the reason codes that explain it; scores,
face details and the monitor's counts go only to API keys with the ``scores`` permission.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BATCH_BODY", "ERROR_RESPONSES", "PUBLIC_REASONS", "REQUEST_BODY", "BatchResponse", "ClassifyResponse",
           "ErrorResponse", "EscalationModel", "HealthResponse", "ReadyResponse", "ReasonModel", "ScoresModel",
           "VerdictModel", "public_escalation", "public_verdict"]

PUBLIC_REASONS: Final = frozenset({"both_high", "review_band", "hash_match", "load_error", "subject_locked"})
"""Reason codes shown without the ``scores`` permission: those that explain a block or review, nothing finer."""

_BINARY: Final = {"type": "string", "format": "binary", "minLength": 1}
REQUEST_BODY: Final = {
    "required": True,
    "description": "The image: raw bytes, or multipart/form-data with the image in the field `file`.",
    "content": {
        "application/octet-stream": {"schema": _BINARY},
        "image/*": {"schema": _BINARY},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}
        },
    },
}
BATCH_BODY: Final = {
    "required": True,
    "description": "multipart/form-data with one or more images, each in a field named `file`.",
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "array", "items": _BINARY, "minItems": 1}},
                       "required": ["file"]}
        },
    },
}


class ScoresModel(BaseModel):
    """Calibrated risk scores in [0, 1]; ``minor`` is null when it was not scored (``skip_minor_below_review``); both are null (unknown) when the image could not be read (``error`` says why)."""

    minor: float | None
    sexual: float | None


class ReasonModel(BaseModel):
    """One machine-readable reason; with the ``scores`` permission its details are extra keys."""

    model_config = ConfigDict(extra="allow")
    code: str


class VerdictModel(BaseModel):
    """The decision; ``scores``, ``frame``, ``backbone`` and ``head`` only with the ``scores`` permission."""

    decision: Literal["allow", "review", "block"]
    blocked: bool
    reasons: list[ReasonModel]
    error: str | None = Field(description="Set when the image could not be read; the decision then fails closed.")
    scores: ScoresModel | None = None
    frame: int | None = None
    backbone: str | None = None
    head: str | None = None


class EscalationModel(BaseModel):
    """The subjects' escalation level; counts and the rule only with the ``scores`` permission."""

    model_config = ConfigDict(extra="allow")
    level: Literal["ok", "warn", "throttle", "lock"]


class ClassifyResponse(BaseModel):
    """What ``POST /v1/classify`` returns."""

    request_id: str
    verdict: VerdictModel
    sha256: str = Field(description="SHA-256 of the image bytes received (the `file` part for multipart).")
    size: int = Field(description="Number of image bytes received.")
    escalation: EscalationModel | None = Field(description="Null without a monitor.")


class BatchItem(BaseModel):
    """One image of a batch."""

    verdict: VerdictModel
    sha256: str
    size: int


class BatchResponse(BaseModel):
    """What ``POST /v1/classify/batch`` returns: one result per `file` part, in order."""

    request_id: str
    results: list[BatchItem]
    escalation: EscalationModel | None


class HealthResponse(BaseModel):
    """What ``GET /healthz`` returns: liveness only."""

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    """What ``GET /readyz`` returns once the models are loaded."""

    status: Literal["ready"]


class ErrorResponse(BaseModel):
    """Every error the service returns; quote ``request_id`` when reporting one."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="A stable code, e.g. unauthorized, rate_limited, body_too_large, busy.")
    message: str
    request_id: str
    detail: list[dict[str, Any]] | None = None


def public_verdict(verdict: dict[str, Any], scores: bool) -> dict[str, Any]:
    """A verdict's ``to_dict()`` cut down to what the caller may see."""
    if scores:
        return verdict
    return {"decision": verdict["decision"], "blocked": verdict["blocked"],
            "reasons": [{"code": r["code"]} for r in verdict["reasons"] if r["code"] in PUBLIC_REASONS],
            "error": None if verdict["error"] is None else "the image could not be read"}


def public_escalation(escalation: dict[str, Any] | None, scores: bool) -> dict[str, Any] | None:
    """An escalation's ``to_dict()`` cut down to its level unless the caller may see scores."""
    if escalation is None or scores:
        return escalation
    return {"level": escalation["level"]}


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in {400: "Malformed request, no image bytes, or no subject while a monitor is configured",
                 401: "No API key, or not a valid one", 403: "The key lacks the permission, or the subject is "
                 "locked (the body then carries a blocking verdict with reason subject_locked)",
                 408: "The body did not arrive in time", 413: "Body over max_body",
                 415: "Not an image content type",
                 422: "Invalid request (headers, multipart without a `file` field)",
                 429: "Rate limit passed, or the subject is throttled; see Retry-After",
                 500: "Internal error, or the audit log could not record the verdict",
                 503: "Inference slots or upload budget full, models still loading, or the attempt monitor "
                      "is unavailable (fail closed); see Retry-After"}.items()
}
