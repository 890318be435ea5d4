"""One exception handler for every inference failure, and the error shape of the OpenAI routes.

Everywhere but `/v1/...` an error is the node's `{"error": reason, "status": N}` (402 bodies
add needed, balance, quote). Under `/v1/` it is OpenAI's
`{"error": {"message", "type", "param", "code"}}`, so OpenAI clients (the official `openai`
package raises `APIStatusError` with `.message`) show the reason instead of a bare status:
the gateway's own handlers (ApiError, HTTP errors such as an unknown `/v1` route, body
validation) are wrapped, not replaced, so both shapes come from the same refusals.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import ApiError
from inference import errors as inference_errors
from inference.errors import InferenceError, PaymentRequired

OPENAI_PREFIX = "/v1/"
# OpenAI's error types by HTTP status (what its clients and docs use); others: by class.
TYPES_BY_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
    403: "permission_error", 404: "invalid_request_error", 409: "invalid_request_error",
    413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
    502: "server_error", 503: "server_error", 504: "timeout",
}
# (code, param) OpenAI clients can branch on, for the failures that have an OpenAI equivalent.
CODES: dict[type[InferenceError], tuple[str, str | None]] = {
    inference_errors.PromptTooLong: ("context_length_exceeded", "messages"),
    inference_errors.ModelNotFound: ("model_not_found", "model"),
    inference_errors.NotAModel: ("model_not_found", "model"),
    inference_errors.ModelNotTrusted: ("model_not_trusted", "model"),
    inference_errors.ModelCorrupt: ("model_corrupt", "model"),
    inference_errors.PaymentRequired: ("payment_required", "payment"),
    inference_errors.InvalidPayment: ("invalid_payment", "payment"),
    inference_errors.RecordNotFound: ("record_not_found", None),
    inference_errors.RecordInvalid: ("record_invalid", None),
    inference_errors.CallTimeout: ("timeout", None),
    inference_errors.WorkerLost: ("worker_lost", None),
    inference_errors.HerderClosed: ("shutting_down", None),
    inference_errors.UpstreamFailed: ("upstream_failed", None),
}
CODES_BY_STATUS = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
                   413: "request_too_large"}


def is_openai_path(request: Request) -> bool:
    """Return True for the OpenAI routes (`/v1/...`), which answer errors in OpenAI's shape."""
    return request.url.path.startswith(OPENAI_PREFIX)


def openai_error(status: int, message: str, code: str | None = None, param: str | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Given a status and message, return OpenAI's error body: {"error": {"message", "type", "param", "code"}}.

    `status` and the extras (402: needed, balance, quote) sit beside `error`, where the node's
    own shape has them; OpenAI clients read `error` only.
    """
    error: dict[str, Any] = {
        "message": message,
        "type": TYPES_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code if code is not None else CODES_BY_STATUS.get(status),
    }
    return {"error": error, "status": status, **(extra or {})}


def inference_error_body(exc: InferenceError) -> dict[str, Any]:
    """Given an inference failure, return its OpenAI error object (402 adds needed, balance, quote)."""
    code, param = next((found for cls, found in CODES.items() if isinstance(exc, cls)), (None, None))
    extra = exc.details() if isinstance(exc, PaymentRequired) else None
    return openai_error(exc.status, str(exc), code, param, extra)


def inference_error_response(exc: InferenceError, openai: bool = False) -> JSONResponse:
    """Given an inference failure, return its JSON response: the node's shape, or OpenAI's."""
    if openai:
        return JSONResponse(inference_error_body(exc), status_code=exc.status)
    body: dict[str, object] = {"error": str(exc), "status": exc.status}
    if isinstance(exc, PaymentRequired):
        body.update(exc.details())
    return JSONResponse(body, status_code=exc.status)


Handler = Callable[[Request, Any], Response | Awaitable[Response]]  # Starlette's exception handler


async def _answer_of(handler: Handler, request: Request, exc: Exception) -> Response:
    """Given an exception handler (async or not), return its response to the request."""
    answer = handler(request, exc)
    return await answer if inspect.isawaitable(answer) else answer


def _reason_and_headers(exc: Exception) -> tuple[int, str, dict[str, str] | None] | None:
    """Given one of the gateway's refusals, return (status, reason, headers); None for others."""
    if isinstance(exc, ApiError):
        return exc.status, exc.reason, exc.headers
    if isinstance(exc, StarletteHTTPException):
        reason = exc.detail if isinstance(exc.detail, str) else "request refused"
        return exc.status_code, reason, getattr(exc, "headers", None)
    return None


def _openai_wrapped(node_handler: Handler) -> Handler:
    """Given the gateway's handler for a refusal, return one that answers `/v1/` in OpenAI's shape."""
    async def handle(request: Request, exc: Exception) -> Response:
        if not is_openai_path(request):
            return await _answer_of(node_handler, request, exc)
        found = _reason_and_headers(exc)
        if found is None:  # body validation: the gateway words it, OpenAI's shape carries it
            response = await _answer_of(node_handler, request, exc)
            status, reason, headers = response.status_code, _reason_of(response), None
        else:
            status, reason, headers = found
        return JSONResponse(openai_error(status, reason), status_code=status, headers=headers)
    return handle


def _reason_of(response: Response) -> str:
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return "request refused"
    return str(body.get("error", "request refused")) if isinstance(body, dict) else "request refused"


def install_inference_errors(app: FastAPI) -> None:
    """Given the app (after the gateway's handlers), answer InferenceErrors with their status,
    and every refusal under `/v1/` in OpenAI's shape."""
    @app.exception_handler(InferenceError)
    async def _inference_error(request: Request, exc: InferenceError) -> JSONResponse:
        return inference_error_response(exc, openai=is_openai_path(request))

    for kind in (ApiError, StarletteHTTPException, RequestValidationError):
        node_handler = app.exception_handlers.get(kind)
        if node_handler is not None:
            app.add_exception_handler(kind, _openai_wrapped(node_handler))
