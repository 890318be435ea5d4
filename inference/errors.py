"""Errors of the inference package, each with the HTTP status it maps to.

The CLI prints `str(error)` on one line; the gateway answers `{"error": str(error),
"status": error.status}`. Every message says what was wrong.
"""


class InferenceError(Exception):
    """Base of every inference failure the caller can act on."""

    status = 400


class InvalidRequest(InferenceError):
    """Bad parameters: sampling out of range, unknown template, malformed messages."""

    status = 400


class PromptTooLong(InvalidRequest):
    """The prompt does not fit the process's context window."""

    status = 400


class ModelNotFound(InferenceError):
    """No object with that ID here or upstream."""

    status = 404


class NotAModel(InferenceError):
    """The object exists but is not a GGUF model."""

    status = 400


class RecordNotFound(InferenceError):
    """A Process, Message or Result record the call needs is missing."""

    status = 404


class RecordInvalid(InferenceError):
    """A record is malformed, tampered with, or inconsistent with the others."""

    status = 422


class ModelCorrupt(InferenceError):
    """The stored weights do not match their ID (a chunk hash or the signature fails)."""

    status = 422


class UpstreamFailed(InferenceError):
    """Upstreams had the object but could not serve it verified."""

    status = 502
