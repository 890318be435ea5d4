"""One exception handler for every inference failure: `{"error": reason, "status": N}`, plus 402 details."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from inference.errors import InferenceError, PaymentRequired


def inference_error_response(exc: InferenceError) -> JSONResponse:
    """Given an inference failure, return its JSON response (402 bodies add needed, balance, quote)."""
    body: dict[str, object] = {"error": str(exc), "status": exc.status}
    if isinstance(exc, PaymentRequired):
        body.update(exc.details())
    return JSONResponse(body, status_code=exc.status)


def install_inference_errors(app: FastAPI) -> None:
    """Given the app, answer every InferenceError that a route lets through with its status."""
    @app.exception_handler(InferenceError)
    async def _inference_error(request: Request, exc: InferenceError) -> JSONResponse:
        return inference_error_response(exc)
