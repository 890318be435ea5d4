"""Errors raised by the storage engine. Protocol errors pass through unchanged."""


class StoreError(Exception):
    """Given a storage operation that cannot be done, say why."""


class NotFound(StoreError, KeyError):
    """No object with this ID is stored."""

    def __init__(self, id: str, what: str = "object"):
        super().__init__(f"{what} {id} not found")
        self.id = id

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class CorruptChunk(StoreError):
    """A stored chunk no longer matches its BLAKE3 address: its bytes must not be served."""

    def __init__(self, id: str, chunk_index: int, hash: str, reason: str = "BLAKE3 mismatch"):
        super().__init__(f"object {id}: chunk {chunk_index} ({hash}) failed verification: {reason}")
        self.id = id
        self.chunk_index = chunk_index
        self.hash = hash
        self.reason = reason


class Conflict(StoreError):
    """The request contradicts what is already stored (stored data is immutable)."""


class DataMismatch(StoreError, ValueError):
    """Uploaded data does not match what its signed header commits to (size or data_root)."""


class PartialBusy(StoreError):
    """A partially held object's segment is locked: another process is fetching it now."""


class PartialClosed(StoreError):
    """A partial object's writer was let go (the object completed, or was dropped): read it from the store."""
