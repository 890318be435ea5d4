"""Errors of the inference package (the herder's too), each with the HTTP status it maps to.

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


class ModelNotTrusted(InferenceError):
    """The model is stored, but neither this node's operator added or pulled it nor a trusted owner signed it."""

    status = 403


# ---------------------------------------------------------------------------- herder


class HerderError(InferenceError):
    """A call the herder could not complete; `status` is the HTTP status to answer with."""

    status = 503


class CallTimeout(HerderError):
    """The call ran past its timeout on every attempt."""

    status = 504


class WorkerLost(HerderError):
    """The worker died on every attempt."""

    status = 503


class CallFailed(HerderError):
    """The job itself raised (bad input found late): not retried, the caller's fault."""

    status = 422


class HerderClosed(HerderError):
    """The herder is shutting down."""

    status = 503


class PaymentRequired(HerderError):
    """The caller offered or holds too little credit; nothing was charged or written."""

    status = 402

    def __init__(self, message: str, needed: int, balance: int | None = None, quote: int | None = None):
        super().__init__(message)
        self.needed = needed
        self.balance = balance
        self.quote = quote

    def details(self) -> dict[str, int | None]:
        """Return the fields a 402 body adds to the error."""
        return {"needed": self.needed, "balance": self.balance, "quote": self.quote}


class InvalidPayment(HerderError):
    """A payment or fee the ledger cannot hold (beyond its integer range)."""

    status = 400
