"""Errors raised by the pure protocol code.

Every error is a ``ValueError`` so callers that only care about "bad input"
can catch one thing; the subclasses say which kind of bad input it was.
"""


class ProtocolError(ValueError):
    """Given input that breaks an Arweave / ANS-104 rule, say which rule."""


class InvalidId(ProtocolError):
    """An ID is not 43 strict base64url characters encoding 32 bytes."""


class InvalidSignature(ProtocolError):
    """A signature does not verify, or an ID does not match its signature."""


class InvalidProof(ProtocolError):
    """A merkle data_path does not lead to the claimed data_root."""


class MalformedData(ProtocolError):
    """Bytes or JSON do not have the shape the format requires."""


class LimitExceeded(ProtocolError):
    """A count or size is past a limit of the format (tags, names, values)."""
