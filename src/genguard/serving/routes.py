"""``POST /v1/classify`` and ``POST /v1/classify/batch``: auth, subjects, rate limits, body, enforcement, batching, records.

The order matters: the key is checked first, then the rate limits (before the body is read);
the body is read with a timeout *before* an inference slot is taken; the subject's escalation
is enforced; the image joins a micro-batch; and the verdict is recorded, audit log first, so a
failing monitor cannot lose the audit record.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from typing import TYPE_CHECKING, Any, Final

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from genguard.errors import AuditError, ImageLoadError, MonitorError
from genguard.serving._http import ApiError, ClientGone, read_body, request_id
from genguard.serving.batching import Busy
from genguard.serving.enforcement import SubjectRequiredError, SubjectThrottledError
from genguard.serving.keys import ApiKey
from genguard.serving.ratelimit import RateLimitError
from genguard.serving.redact import redact
from genguard.serving.schema import (BATCH_BODY, ERROR_RESPONSES, REQUEST_BODY, BatchResponse, ClassifyResponse,
                                     public_escalation, public_verdict)

if TYPE_CHECKING:
    from genguard.serving.auth import Authorizer
    from genguard.serving.screening import Screening
    from genguard.serving._state import ServiceState
    from genguard.verdict import Verdict

__all__ = ["SUBJECT_HEADERS", "add_classify_routes"]

logger = logging.getLogger("genguard.serving")

SUBJECT_HEADERS: Final = {"subject": "X-Genguard-Subject", "account": "X-Genguard-Account", "ip": "X-Genguard-IP",
                          "device": "X-Genguard-Device"}
"""Headers that name who asked for an image; the trusted caller sets them."""
_HEADER_PATTERN: Final = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"


def _header(kind: str) -> Any:
    return Header(None, alias=SUBJECT_HEADERS[kind], min_length=1, max_length=256, pattern=_HEADER_PATTERN,
                  description=f"Who asked for the image ({kind}); set by the trusted caller, namespaced by the key.")


def _identities(subject: str | None = _header("subject"), account: str | None = _header("account"),
                ip: str | None = _header("ip"), device: str | None = _header("device")) -> dict[str, str | None]:
    """The subject headers of a request (a FastAPI dependency, so both routes document them)."""
    return {"subject": subject, "account": account, "ip": ip, "device": device}


class _Who:
    """The request's identities, namespaced by the key: one plain subject and/or a mapping."""

    def __init__(self, key: ApiKey | None, auth: Authorizer, headers: dict[str, str | None]) -> None:
        named = {k: auth.namespace(key, v) for k, v in headers.items() if v is not None}
        self.subject = named.pop("subject", None)
        self.subjects = named or None

    def rate_identities(self, key: ApiKey | None) -> list[tuple[str, str]]:
        ids = [("key", key.name)] if key is not None else []
        if self.subject is not None:
            ids.append(("subject", self.subject))
        ids += [("subject", f"{k}:{v}") for k, v in (self.subjects or {}).items()]
        return ids


def add_classify_routes(app: FastAPI, state: ServiceState, auth: Authorizer) -> None:
    """Add the two classification routes to ``app``."""

    async def admit(request: Request, who: _Who, key: ApiKey | None, images: int) -> Any:
        """Rate limits, then readiness; returns the screening."""
        if state.limiter is not None:
            try:
                wait = await run_in_threadpool(state.limiter.hit, who.rate_identities(key), images)
            except RateLimitError as exc:
                logger.error("request %s: %s", request_id(request), redact(str(exc)))
                raise ApiError(503, "rate_limit_unavailable", "the rate-limit store is unavailable, so the request "
                               "was refused (fail closed)", {"Retry-After": "5"}) from None
            if wait is not None:
                raise ApiError(429, "rate_limited", "rate limit reached; retry later",
                               {"Retry-After": str(max(1, math.ceil(wait)))})
        if state.screening is None:
            raise ApiError(503, "not_ready", "the models are still loading; retry later", {"Retry-After": "5"})
        return state.screening

    async def enforce(request: Request, screening: Any, who: _Who) -> Any:
        """The subject's escalation before scoring: None to go on, or a subject_locked verdict."""
        try:
            return await run_in_threadpool(screening.admit, subject=who.subject, subjects=who.subjects)
        except SubjectRequiredError:
            raise ApiError(400, "subject_required", "name who asked for the image in " + ", ".join(
                SUBJECT_HEADERS.values())) from None
        except SubjectThrottledError as exc:
            raise ApiError(429, "subject_throttled", "this subject is throttled; retry later",
                           {"Retry-After": str(exc.retry_after_s)}) from None
        except MonitorError as exc:
            logger.error("request %s: monitor unavailable: %s", request_id(request), redact(str(exc)))
            raise ApiError(503, "monitor_unavailable", _MONITOR_DOWN, {"Retry-After": "5"}) from None

    async def settle(request: Request, screening: Screening, verdict: Verdict, who: _Who) -> dict[str, Any] | None:
        """Record the verdict (audit first); the escalation dict or None."""
        try:
            screened = await run_in_threadpool(lambda: screening.record(
                verdict, subject=who.subject, subjects=who.subjects, source=f"request:{request_id(request)}"))
        except AuditError as exc:
            logger.error("request %s: audit record failed: %s", request_id(request), redact(str(exc)))
            raise ApiError(500, "record_failed", f"the verdict could not be recorded; quote request id "
                           f"{request_id(request)}") from None
        except MonitorError as exc:
            logger.error("request %s: monitor unavailable after the audit record: %s", request_id(request),
                         redact(str(exc)))
            raise ApiError(503, "monitor_unavailable", _MONITOR_DOWN, {"Retry-After": "5"}) from None
        if screened.escalation is None:
            return None
        state.metrics.escalations.labels(screened.escalation.level).inc()
        return dict(screened.escalation.to_dict())

    async def score(data: bytes) -> Verdict:
        try:
            verdict: Verdict = await state.batcher.submit(data)  # type: ignore[union-attr]
            return verdict
        except ImageLoadError:  # only a Guard built with on_error="raise"
            raise ApiError(422, "unreadable_image", "the image could not be read") from None
        except Busy:
            raise ApiError(503, "busy", f"{state.settings.max_concurrency} requests are already waiting for or in "
                           "inference; retry later", {"Retry-After": "1"}) from None

    def answer(request: Request, key: ApiKey | None, verdict: Any, data: bytes) -> dict[str, Any]:
        request.scope["state"]["decision"] = verdict.decision
        return {"verdict": public_verdict(verdict.to_dict(), auth.may(key, "scores")),
                "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=ERROR_RESPONSES, response_model_exclude_unset=True,
              openapi_extra={"requestBody": REQUEST_BODY}, summary="Screen one image")
    async def classify(
        request: Request,
        identities: dict[str, str | None] = Depends(_identities),
    ) -> Any:
        key = await auth.check(request, "classify")
        media = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        multipart = media == "multipart/form-data"
        if not (multipart or media.startswith("image/") or media == "application/octet-stream"):
            raise ApiError(415, "unsupported_media_type", f"content type {media[:64]!r} is not accepted; send "
                           "image/*, application/octet-stream or multipart/form-data with the image in 'file'")
        who = _Who(key, auth, identities)
        screening = await admit(request, who, key, 1)
        body = await _body(request, state)
        data = (await _files(request, body, 1))[0] if multipart else body
        if not data:
            raise ApiError(400, "empty_body", "no image bytes were sent; send the image as the body or as the "
                           "multipart field 'file'")
        locked = await enforce(request, screening, who)
        verdict = locked if locked is not None else await score(data)
        escalation = await settle(request, screening, verdict, who)
        body_out = {"request_id": request_id(request), **answer(request, key, verdict, data),
                    "escalation": public_escalation(escalation, auth.may(key, "scores"))}
        if locked is not None:
            return JSONResponse({"error": "subject_locked", "message": "this subject is locked",
                                 **body_out, "escalation": {"level": "lock"}}, status_code=403)
        return body_out

    @app.post("/v1/classify/batch", response_model=BatchResponse, responses=ERROR_RESPONSES, response_model_exclude_unset=True,
              openapi_extra={"requestBody": BATCH_BODY}, summary="Screen several images in one request")
    async def classify_batch(
        request: Request,
        identities: dict[str, str | None] = Depends(_identities),
    ) -> Any:
        key = await auth.check(request, "classify")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "multipart/form-data":
            raise ApiError(415, "unsupported_media_type", "send multipart/form-data with one image per 'file' field")
        who = _Who(key, auth, identities)
        screening = await admit(request, who, key, 1)
        images = await _files(request, await _body(request, state), state.settings.max_batch_images)
        if not all(images):
            raise ApiError(400, "empty_body", "every 'file' part must hold image bytes")
        if len(images) > 1:  # the first image was counted before the body was read
            await admit(request, who, key, len(images) - 1)
        locked = await enforce(request, screening, who)
        if locked is not None:
            verdicts = [locked] * len(images)
        else:
            verdicts = list(await asyncio.gather(*(score(d) for d in images)))
        escalation = None
        for verdict, data in zip(verdicts, images):
            escalation = await settle(request, screening, verdict, who) or escalation
        results = [answer(request, key, v, d) for v, d in zip(verdicts, images)]
        request.scope["state"]["decision"] = max((v.decision for v in verdicts), key=("allow", "review", "block").index)
        out = {"request_id": request_id(request), "results": results,
               "escalation": public_escalation(escalation, auth.may(key, "scores"))}
        if locked is not None:
            return JSONResponse({"error": "subject_locked", "message": "this subject is locked", **out,
                                 "escalation": {"level": "lock"}}, status_code=403)
        return out


_MONITOR_DOWN: Final = "the attempt monitor is unavailable, so the request was refused (fail closed)"


async def _body(request: Request, state: ServiceState) -> bytes:
    try:
        return await read_body(request, state.settings.max_body, state.settings.body_timeout_s, state.budget)
    except ClientGone:
        logger.info("request %s: client disconnected while sending the body", request_id(request))
        raise ApiError(400, "client_disconnected", "the client went away") from None


async def _files(request: Request, body: bytes, most: int) -> list[bytes]:
    """The bytes of the ``file`` parts of an already read multipart body (at most ``most``)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=most, max_fields=16)
    except Exception as exc:  # starlette raises its own errors for malformed or oversized forms
        raise ApiError(400, "bad_multipart", f"the multipart body could not be parsed: {type(exc).__name__}") from None
    try:
        parts = [p for p in form.getlist("file") if isinstance(p, UploadFile)]
        if not parts:
            raise ApiError(422, "missing_file", "multipart body has no file field named 'file'")
        return [await p.read() for p in parts]
    finally:
        await form.close()
