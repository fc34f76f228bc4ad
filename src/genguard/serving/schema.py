"""The wire schema of the HTTP service: request body description and response models (see :mod:`genguard.serving.server`)."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ERROR_RESPONSES", "REQUEST_BODY", "ClassifyResponse", "ErrorResponse", "HealthResponse", "ReasonModel",
           "ScoresModel", "VerdictModel"]

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


class ScoresModel(BaseModel):
    """Calibrated risk scores in [0, 1]; ``minor`` is null when it was not scored because it could not change the
    decision; both are null (unknown) when the image could not be read (``error`` says why)."""

    minor: float | None
    sexual: float | None


class ReasonModel(BaseModel):
    """One machine-readable reason; its details are extra keys (see :class:`genguard.Reason`)."""

    model_config = ConfigDict(extra="allow")
    code: str


class VerdictModel(BaseModel):
    """:meth:`genguard.Verdict.to_dict` as a schema."""

    decision: Literal["allow", "review", "block"]
    blocked: bool
    scores: ScoresModel
    reasons: list[ReasonModel]
    error: str | None = Field(description="Why the image could not be read; the decision then follows on_error.")
    frame: int | None
    backbone: str
    head: str
    sha256: str | None = Field(default=None, description="sha256 of the image as received.")
    pdq: list[str] = Field(default_factory=list, description="PDQ hashes of the scored frames, when computed.")


class ClassifyResponse(BaseModel):
    """What ``POST /v1/classify`` returns."""

    verdict: VerdictModel
    sha256: str = Field(description="SHA-256 of the image bytes received (the `file` part for multipart).")
    size: int = Field(description="Number of image bytes received.")
    subject: str | None = Field(description="The X-Genguard-Subject header, if sent.")
    escalation: dict[str, Any] | None = Field(description="The subject's monitor state; null without a monitor or subject.")


class HealthResponse(BaseModel):
    """What ``GET /healthz`` returns."""

    status: Literal["ok"]
    backbone: str
    head: str
    policy: dict[str, float]
    max_body: int
    max_concurrency: int
    in_flight: int
    monitor: bool
    audit_log: bool


class ErrorResponse(BaseModel):
    """Every error the service returns."""

    error: str = Field(description="A stable code, e.g. body_too_large, busy, unsupported_media_type.")
    message: str
    detail: list[dict[str, Any]] | None = None


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in {400: "Malformed request, or no image bytes", 413: "Body over max_body", 415: "Not an image content type",
                 422: "Invalid request (headers, multipart without a `file` field)",
                 500: "Internal error, or the monitor / audit log could not record the verdict",
                 503: "max_concurrency requests already running; see Retry-After"}.items()
}
