"""The Tag pair shared by L1 transactions and ANS-104 data items."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Tag:
    """One tag: name and value as raw bytes (usually UTF-8 text)."""

    name: bytes
    value: bytes

    @classmethod
    def text(cls, name: str, value: str) -> "Tag":
        """Given a name and value as text, return the Tag of their UTF-8 bytes."""
        return cls(name.encode("utf-8"), value.encode("utf-8"))
