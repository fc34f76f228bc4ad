"""The HTTP service over FastAPI: who may call it, what it enforces, and how it answers.

``genguard serve`` runs it (see :mod:`genguard.serving.runner`); :func:`create_app` builds the
same app around a screening (for tests, or to mount it in a larger app).

Protocol
--------
Every route but ``GET /healthz`` needs ``Authorization: Bearer KEY`` when the app has a key
store (401 otherwise; 403 for a key without the route's permission).

``POST /v1/classify``
    The body is the image: raw bytes (``image/*`` or ``application/octet-stream``) or
    ``multipart/form-data`` with the image in the field ``file``. Who asked for it goes in
    ``X-Genguard-Subject`` and/or ``X-Genguard-Account``, ``X-Genguard-IP``,
    ``X-Genguard-Device`` (set by the trusted caller; namespaced by the key's name). With a
    monitor a subject is required (400), a throttled subject gets 429 with ``Retry-After`` and a
    locked one 403 with a blocking verdict (reason ``subject_locked``). An unreadable image is
    *not* a protocol error: it gets a normal verdict with ``error`` set, blocked by default.
``POST /v1/classify/batch``
    ``multipart/form-data`` with up to ``max_batch_images`` ``file`` parts; one result each.
``GET /healthz``
    Liveness only. ``GET /readyz``: 200 once the models are loaded, 503 before.
``GET /metrics``
    Prometheus text format (``metrics`` permission).
``GET /openapi.json``, ``GET /docs``
    Only for keys with the ``docs`` permission (the schema), or for anyone with ``docs=True``.

Every error is JSON, ``{"error": CODE, "message": TEXT, "request_id": ID}``; an internal error
tells the client only its request id, and the log holds the detail (with credentials masked).

Examples
--------
>>> from genguard import Guard                                   # doctest: +SKIP
>>> from genguard.serving.server import create_app               # doctest: +SKIP
>>> app = create_app(Guard(), keys="keys.json", max_batch=8)      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from genguard.guard import Guard
from genguard.serving._http import ApiError, ObserveMiddleware, error_response, phrase
from genguard.serving._state import ServiceState
from genguard.serving.auth import Authorizer
from genguard.serving.metrics import ServiceMetrics
from genguard.serving.ratelimit import RateLimiter
from genguard.serving.routes import SUBJECT_HEADERS, add_classify_routes
from genguard.serving.schema import ERROR_RESPONSES, HealthResponse, ReadyResponse
from genguard.serving.runner import serve
from genguard.serving.screening import Screening
from genguard.serving.settings import ServiceSettings

__all__ = ["SUBJECT_HEADERS", "ServiceSettings", "create_app", "resolve_audit", "resolve_monitor", "serve"]

logger = logging.getLogger("genguard.serving")

_ROUTES: Final = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/v1/classify",
                            "/v1/classify/batch"})


def create_app(
    screening: Screening | Guard | Callable[[], Screening | Guard],
    *,
    keys: Any = None,
    monitor: Any = None,
    audit_log: Any = None,
    enforcement: Any = None,
    settings: ServiceSettings | None = None,
    **options: Any,
) -> FastAPI:
    """Build the FastAPI app around a screening.

    Parameters
    ----------
    screening : Screening, Guard or callable
        What screens the images; a Guard is wrapped in a Screening with ``monitor``,
        ``audit_log`` and ``enforcement``. A callable is called in a thread at startup (the
        models load while ``/healthz`` already answers; ``/readyz`` says when they are ready).
    keys : KeyStore, path or None, default None
        The API keys. None: no authentication (then serve on loopback only, as ``genguard
        serve`` insists).
    monitor, audit_log : path, URL, object or None
        The attempt monitor (SQLite file, Redis URL or AttemptMonitor) and the audit log (path or
        AuditLog) of the Screening built when ``screening`` is a Guard (which then needs
        ``hash_frames=True`` for an audit log).
    enforcement : Enforcement or None
        Likewise; None takes ``Enforcement()``.
    settings : ServiceSettings, optional
        Limits, batching, rate limits and disclosure; ``**options`` override its fields.

    Returns
    -------
    fastapi.FastAPI
    """
    from genguard import __version__

    settings = ServiceSettings.build(settings, **options)
    metrics = ServiceMetrics()
    state = ServiceState(settings, metrics)
    auth = Authorizer(keys, docs=settings.docs)
    rates = {k: r for k, r in (("key", settings.rate_per_key), ("subject", settings.rate_per_subject)) if r}
    state.limiter = RateLimiter(rates, redis=settings.rate_redis) if rates else None

    def build() -> Screening:
        made = screening() if not isinstance(screening, (Screening, Guard)) else screening
        if isinstance(made, Guard):
            made = Screening(made, monitor=resolve_monitor(monitor), audit=resolve_audit(audit_log),
                             enforcement=enforcement)
        if not isinstance(made, Screening):
            raise TypeError(f"create_app needs a Screening, a Guard or a callable returning one, got {type(made).__name__}")
        return made

    def load() -> None:
        try:
            state.ready(build())
            logger.info("models loaded; ready")
        except Exception as exc:
            state.load_error = type(exc).__name__
            logger.exception("could not load the screening")

    if isinstance(screening, (Screening, Guard)):
        state.ready(build())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.screening is None and state.load_error is None:
            threading.Thread(target=load, name="genguard-load", daemon=True).start()
        yield
        if state.batcher is not None:  # uvicorn lets in-flight requests finish before this runs
            await run_in_threadpool(state.batcher.stop)
        if state.limiter is not None:
            state.limiter.close()

    app = FastAPI(title="genguard", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Screen AI-generated images: a block gate on minor and sexual risk.")
    app.add_middleware(ObserveMiddleware, observe=metrics.observe, routes=_ROUTES)
    _error_handlers(app)
    _meta_routes(app, state, auth)
    add_classify_routes(app, state, auth)
    return app


# ------------------------------------------------------------------------------ errors
def resolve_monitor(monitor: Any) -> Any:
    """An attempt monitor from a SQLite path or Redis URL; objects and None pass through."""
    if monitor is None or hasattr(monitor, "record"):
        return monitor
    from genguard.defences.monitor import AttemptMonitor

    return AttemptMonitor(os.fspath(monitor))


def resolve_audit(audit_log: Any) -> Any:
    """An audit log from a path; objects and None pass through."""
    if audit_log is None or hasattr(audit_log, "record"):
        return audit_log
    from genguard.defences.audit import AuditLog

    return AuditLog(os.fspath(audit_log))


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, phrase(exc.status_code), str(exc.detail),
                              getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        return error_response(request, 422, "invalid_request", "the request is invalid; see detail", detail=detail)


# ------------------------------------------------------------------------ meta routes
def _meta_routes(app: FastAPI, state: ServiceState, auth: Authorizer) -> None:
    @app.get("/healthz", response_model=HealthResponse, summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyResponse, responses=ERROR_RESPONSES, summary="Readiness: models loaded")
    async def readyz(request: Request) -> Any:
        await auth.check(request, None)
        if state.screening is None:
            code = "load_failed" if state.load_error else "not_ready"
            return error_response(request, 503, code, "the models are not loaded" + (
                "; loading failed, see the log" if state.load_error else " yet"), {"Retry-After": "5"})
        return {"status": "ready"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        await auth.check(request, "metrics")
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        if not auth.docs:
            await auth.check(request, "docs")
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        if not auth.docs:
            raise ApiError(404, "not_found", "Not Found")
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="genguard")
