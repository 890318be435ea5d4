"""JSON errors: every failure a client sees is `{"error": reason, "status": N}`."""

from __future__ import annotations

import errno
import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from permastore.protocol.errors import ProtocolError
from permastore.store import CorruptChunk, NotFound, StoreError
from permastore.store.bucket.storage import BucketError

log = logging.getLogger("gateway")


class ApiError(Exception):
    """A refusal with an HTTP status and a reason the client can act on."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def bad_request(reason: str) -> ApiError:
    """Given a reason, return a 400 error."""
    return ApiError(400, reason)


def not_found(what: str = "Not Found") -> ApiError:
    """Given what was missing, return a 404 error."""
    return ApiError(404, what)


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Given a status and reason, return the JSON error response."""
    return JSONResponse({"error": reason, "status": status}, status_code=status, headers=headers)


def _validation_reason(exc: RequestValidationError) -> str:
    """Given FastAPI's validation error, return one readable line."""
    from gateway.openapi import PATTERN_MEANINGS

    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        pattern = (err.get("ctx") or {}).get("pattern")
        meaning = PATTERN_MEANINGS.get(pattern) if isinstance(pattern, str) else None
        if meaning is not None:
            parts.append(f"invalid {where.removeprefix('path.')}: expected {meaning}")
            continue
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Given the app, make every error a JSON body with the right status."""
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.reason, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = exc.detail if isinstance(exc.detail, str) else "request refused"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method the path's routes take, not only the first route's
            from gateway.openapi import allowed_methods

            allow = allowed_methods(request.app, request.scope)
            headers = {**(headers or {}), "Allow": ", ".join(allow)}
            reason = f"method {request.method} not allowed here; use {' or '.join(allow)}"
        return error_response(exc.status_code, reason, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_reason(exc))

    @app.exception_handler(ProtocolError)
    async def _protocol(request: Request, exc: ProtocolError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: Exception) -> JSONResponse:
        return error_response(404, "Not Found")

    @app.exception_handler(CorruptChunk)
    async def _corrupt(request: Request, exc: Exception) -> JSONResponse:
        # Stored bytes failed their hash: a fault on this node, never served.
        log.error("corrupt data refused: %s", exc)
        return error_response(500, f"stored data failed verification: {exc}")

    @app.exception_handler(BucketError)
    async def _bucket_down(request: Request, exc: Exception) -> JSONResponse:
        # The bucket (the durable copy) failed: nothing was acknowledged; the client may retry.
        log.warning("bucket unavailable: %s", exc)
        # A read answers what failed; only a write has something that was not acknowledged.
        writing = request.method not in ("GET", "HEAD")
        prefix = "storage bucket unavailable, nothing was acknowledged" if writing else "storage bucket unavailable"
        return error_response(503, f"{prefix}: {exc}", {"Retry-After": "5"})

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: Exception) -> JSONResponse:
        # StoreError subclasses that are the client's fault (Conflict, refused data) are 400s.
        return error_response(400, str(exc) or type(exc).__name__)

    app.add_middleware(InternalErrorMiddleware)


class InternalErrorMiddleware:
    """Turn an unexpected exception into a logged JSON 500 instead of a traceback.

    When the response has already started (a stream failed midway), the exception is
    re-raised so that the server drops the connection: the client sees a short body,
    never bytes that were not verified.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except ClientDisconnect:  # the client left (or was timed out) mid-body: nobody to answer
            log.info("client went away during %s %s", scope.get("method"), scope.get("path"))
        except RecursionError:
            # Safety net for routes that parse bodies themselves: only input nested past the
            # interpreter's depth (JSON, a query) recurses this far. Its own routes say so first.
            log.warning("refused on %s %s: input nested too deeply", scope.get("method"), scope.get("path"))
            if started:
                raise
            await error_response(400, "request nested too deeply to process")(scope, receive, send)
        except Exception as exc:
            full = storage_full(exc)
            if full:
                log.warning("refused on %s %s: storage full: %s", scope.get("method"), scope.get("path"), exc)
            else:
                log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            if full:
                # Nothing was acknowledged; what is stored stays readable (reads never write).
                response = error_response(507, f"insufficient storage: the node's disk is full ({exc}); nothing was stored")
            else:
                response = error_response(500, f"internal error: {type(exc).__name__}")
            await response(scope, receive, send)


SQLITE_FULL = 13  # sqlite3 result code "database or disk is full"
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def storage_full(exc: BaseException) -> bool:
    """Given an exception, return whether it says the disk (or the quota) is full, here or in its causes."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, OSError) and current.errno in FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error) and (
            getattr(current, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False
