"""HTTP plumbing of the service: JSON errors, request ids, bounded body reading, and per-request metrics.

Nothing here knows about images or models; :mod:`genguard.serving.server` builds on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, Final

from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect, Request

__all__ = ["ApiError", "BodyBudget", "ClientGone", "ObserveMiddleware", "error_response", "read_body", "request_id"]

logger = logging.getLogger("genguard.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

REQUEST_ID_HEADER: Final = "X-Request-Id"


class ApiError(Exception):
    """An answer other than 200: status, stable code, message for the client, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ClientGone(Exception):
    """The client closed the connection before its request was read."""


def request_id(request: Request) -> str:
    """This request's id (set by :class:`ObserveMiddleware`; also in the ``X-Request-Id`` response header)."""
    return str(request.scope.get("state", {}).get("request_id", "-"))


def error_response(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    """``{"error": CODE, "message": TEXT, "request_id": ID}`` with ``status``."""
    body: dict[str, Any] = {"error": code, "message": message, "request_id": request_id(request)}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def phrase(status: int) -> str:
    """A stable code from an HTTP status (404 -> "not_found")."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


class BodyBudget:
    """Bytes of request bodies buffered at once, across all requests; past ``limit`` a read is refused (503).

    Counting what has arrived (not what was declared) keeps slow clients cheap: a socket that
    trickles one byte holds one byte, so many of them cannot lock out the others.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


async def read_body(request: Request, limit: int, timeout_s: float, budget: BodyBudget) -> bytes:
    """The request body, read within ``timeout_s`` seconds and refused as soon as it passes ``limit`` bytes.

    Raises :class:`ApiError` (400, 408, 413, 503) or :class:`ClientGone`.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, "body_too_large", f"the body is {int(declared)} bytes; the limit is {limit}")
    buf = bytearray()

    async def pull() -> None:
        async for chunk in request.stream():
            if len(buf) + len(chunk) > limit:
                raise ApiError(413, "body_too_large", f"the body passed the limit of {limit} bytes")
            if not budget.take(len(chunk)):
                raise ApiError(503, "busy", "too many uploads in progress; retry later", {"Retry-After": "1"})
            buf.extend(chunk)

    try:
        await asyncio.wait_for(pull(), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, "body_timeout", f"the body did not arrive within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise ClientGone() from None
    finally:
        budget.give(len(buf))
    return bytes(buf)


class ObserveMiddleware:
    """Pure ASGI middleware: a request id per request, the ``X-Request-Id`` header, and metrics.

    ``observe(route, status, decision, seconds)`` is called once per HTTP request; the route is
    the matched path template (unmatched paths count as ``"other"``) and the decision is what the
    handler left in ``scope["state"]["decision"]`` ("-" when none).
    """

    def __init__(self, app: ASGIApp, observe: Callable[[str, int, str, float], None], routes: frozenset[str]) -> None:
        self.app, self.observe, self.routes = app, observe, routes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        start, status, started = time.perf_counter(), 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # the client learns only the request id; the log holds the detail
            logger.error("request %s: unhandled %s in %s %s", rid, type(exc).__name__, scope.get("method"),
                         scope.get("path"), exc_info=exc)
            if not started:
                body = json.dumps({"error": "internal_error", "request_id": rid,
                                   "message": f"internal error; quote request id {rid} when reporting it"}).encode()
                await send_with_id({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        finally:
            path = scope.get("path", "")
            route = path if path in self.routes else "other"
            self.observe(route, status, str(scope["state"].get("decision", "-")), time.perf_counter() - start)
