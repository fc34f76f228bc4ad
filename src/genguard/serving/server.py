"""The HTTP service: ``POST /v1/classify`` and ``GET /healthz`` over FastAPI and uvicorn.

``genguard serve`` runs it; :func:`create_app` builds the same app around a
ready :class:`~genguard.Guard` (for tests, or to mount it in a larger app).

Protocol
--------
``POST /v1/classify``
    The body is the image: raw bytes (``image/*`` or ``application/octet-stream``)
    or ``multipart/form-data`` with the image in the field ``file``. The optional
    header ``X-Genguard-Subject`` names who asked for the image; with a monitor
    configured, the response then carries the subject's escalation state.
    An unreadable image is *not* a protocol error: it gets a normal verdict with
    ``error`` set and the Guard's ``on_error`` decision (``block`` by default).
``GET /healthz``
    Liveness, the backbone, head and policy in use, and the limits.

Every error is JSON, ``{"error": CODE, "message": TEXT}``: 400 for an empty body, 413 for a body over
``max_body`` (checked from ``Content-Length`` and again while reading, so an
oversized upload is cut off, never buffered whole), 415 for a content type that
is not an image, 422 for a malformed request, 503 with ``Retry-After`` while
``max_concurrency`` requests are already being classified.

Examples
--------
>>> from genguard import Guard                  # doctest: +SKIP
>>> from genguard.serving.server import create_app      # doctest: +SKIP
>>> app = create_app(Guard(), max_concurrency=2)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from genguard.serving.schema import ERROR_RESPONSES, REQUEST_BODY, ClassifyResponse, ErrorResponse, HealthResponse
from genguard.errors import GenguardError, ImageLoadError
from genguard.serving.screening import AttemptCounter, AuditSink, Screening

if TYPE_CHECKING:
    from genguard.guard import Guard

__all__ = ["ClassifyResponse", "ErrorResponse", "HealthResponse", "create_app", "serve"]

logger = logging.getLogger(__name__)

MAX_BODY: Final = 20 * 1024 * 1024
"""Default request body limit (20 MiB), the same as ``genguard serve --max-body``."""

MAX_CONCURRENCY: Final = 4
"""Default number of requests classified at once; the next one gets 503."""

SUBJECT_HEADER: Final = "X-Genguard-Subject"
_RETRY_AFTER_S: Final = "1"


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = ErrorResponse(error=code, message=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


# ------------------------------------------------------------------------ the app
def create_app(
    guard: Guard,
    *,
    max_body: int = MAX_BODY,
    max_concurrency: int = MAX_CONCURRENCY,
    monitor: AttemptCounter | str | os.PathLike[str] | None = None,
    audit_log: AuditSink | str | os.PathLike[str] | None = None,
) -> FastAPI:
    """Build the FastAPI app around a ready Guard.

    Parameters
    ----------
    guard : Guard
        Shared by all requests (a Guard is thread-safe); inference runs in a thread pool.
    max_body : int, default 20 MiB
        Largest request body in bytes; larger ones get 413 without being buffered.
    max_concurrency : int, default 4
        Requests classified at once; a request beyond that gets 503 with ``Retry-After``.
    monitor : path, AttemptMonitor or None, default None
        Attempt monitor (a SQLite path or Redis URL, or any thread-safe object with
        ``record(subject, verdict, policy=)``).
        Requests with an ``X-Genguard-Subject`` header are recorded and get its escalation.
    audit_log : path, AuditLog or None, default None
        Audit log (a path, or any thread-safe object with ``record(verdict, subject=, image=, guard=)``).

    Returns
    -------
    fastapi.FastAPI

    Examples
    --------
    >>> app = create_app(guard, max_body=1 << 20)   # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    if max_body < 1 or max_concurrency < 1:
        raise ValueError(f"max_body and max_concurrency must be at least 1, got {max_body} and {max_concurrency}")
    from genguard import __version__

    monitor_obj = _resolve(monitor, "defences.monitor", "AttemptMonitor")
    audit_obj = _resolve(audit_log, "defences.audit", "AuditLog")
    screening = Screening(guard, monitor=monitor_obj, audit=audit_obj)
    state = {"in_flight": 0}
    app = FastAPI(title="genguard", version=__version__,
                  description="Screen AI-generated images: minor and sexual risk scores, and a block gate.")

    @app.exception_handler(_ApiError)
    async def _api_error(request: Request, exc: _ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _phrase(exc.status_code)
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        return _error(422, "invalid_request", "the request is invalid; see detail", detail=detail)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return _error(500, "internal_error", f"{type(exc).__name__} while handling the request")

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness and configuration")
    async def healthz() -> HealthResponse:
        return HealthResponse(status="ok", backbone=guard.embedder.name, head=guard.head.identifier,
                              policy=guard.policy.to_dict(), max_body=max_body, max_concurrency=max_concurrency,
                              in_flight=state["in_flight"], monitor=monitor_obj is not None,
                              audit_log=audit_obj is not None)

    def classify_sync(data: bytes, subject: str | None) -> dict[str, Any]:
        try:
            verdict = guard.classify(data)
        except ImageLoadError as exc:  # only a Guard built with on_error="raise"
            raise _ApiError(422, "unreadable_image", str(exc)) from exc
        try:  # audit first, then the monitor; a failure to record must not pass silently
            screened = screening.record(verdict, subject=subject)
        except GenguardError as exc:
            logger.error("could not record the verdict: %s", exc)
            raise _ApiError(500, "record_failed", f"the verdict could not be recorded: {exc}") from exc
        escalation = None if screened.escalation is None else screened.escalation.to_dict()
        return {"verdict": verdict.to_dict(), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "subject": subject, "escalation": escalation}

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=ERROR_RESPONSES,
              openapi_extra={"requestBody": REQUEST_BODY}, summary="Screen one image")
    async def classify(
        request: Request,
        subject: str | None = Header(None, alias=SUBJECT_HEADER, min_length=1, max_length=256,
                                     description="Who asked for the image; used by the attempt monitor."),
    ) -> dict[str, Any]:
        media = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        multipart = media == "multipart/form-data"
        if not (multipart or media.startswith("image/") or media == "application/octet-stream"):
            raise _ApiError(415, "unsupported_media_type",
                            f"content type {media!r} is not accepted; send image/*, application/octet-stream "
                            "or multipart/form-data with the image in the field 'file'")
        if state["in_flight"] >= max_concurrency:
            raise _ApiError(503, "busy", f"{max_concurrency} requests are already being classified; retry later",
                            {"Retry-After": _RETRY_AFTER_S})
        state["in_flight"] += 1
        try:
            body = await _read_limited(request, max_body)
            data = await _multipart_file(request, body) if multipart else body
            if not data:
                raise _ApiError(400, "empty_body", "no image bytes were sent; send the image as the body "
                                "or as the multipart field 'file'")
            return await run_in_threadpool(classify_sync, data, subject)
        finally:
            state["in_flight"] -= 1

    return app


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _ApiError(400, "bad_request", f"Content-Length is not a number: {declared!r}")
        if int(declared) > limit:
            raise _ApiError(413, "body_too_large", f"the body is {int(declared)} bytes; the limit is {limit}")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise _ApiError(413, "body_too_large", f"the body passed the limit of {limit} bytes")
    return bytes(buf)


async def _multipart_file(request: Request, body: bytes) -> bytes:
    """The bytes of the ``file`` field of an already read multipart body."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise _ApiError(422, "missing_file", "multipart body has no file field named 'file'")
        return await part.read()
    finally:
        await form.close()


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _resolve(value: Any, module: str, cls: str) -> Any:
    """A monitor/audit object from a path (imported lazily) or a ready object."""
    if value is None or hasattr(value, "record"):
        return value
    from importlib import import_module

    return getattr(import_module(f"genguard.{module}"), cls)(os.fspath(value))


# ---------------------------------------------------------------------- the CLI's entry
def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body: int = MAX_BODY,
    max_concurrency: int = MAX_CONCURRENCY,
    monitor: str | os.PathLike[str] | None = None,
    audit_log: str | os.PathLike[str] | None = None,
    backbone: str = "bundled",
    head: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    **backbone_options: Any,
) -> None:
    """Build a Guard and serve it with uvicorn until interrupted (``genguard serve``).

    Parameters are those of :func:`create_app` and :class:`~genguard.Guard`
    (``backbone_options`` such as ``threads=2`` go to the backbone).

    Examples
    --------
    >>> serve(host="127.0.0.1", port=8000, max_concurrency=2)  # doctest: +SKIP
    """
    import uvicorn

    from genguard.guard import Guard

    guard = Guard(backbone, head=head, device=device, batch_size=batch_size, hash_frames=audit_log is not None,
                  **backbone_options)
    app = create_app(guard, max_body=max_body, max_concurrency=max_concurrency, monitor=monitor, audit_log=audit_log)
    logger.info("serving %r on http://%s:%d", guard, host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")
