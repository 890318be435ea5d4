"""HTTP Range headers (RFC 9110 section 14), single range only."""

from __future__ import annotations

from dataclasses import dataclass


class Unsatisfiable(ValueError):
    """The range lies wholly past the end of the representation: answer 416."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes start..end of a representation, end exclusive."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        """Given the full size, return the Content-Range header value."""
        return f"bytes {self.start}-{self.end - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Given a Range header and the full size, return the one range asked for.

    None means "send the whole thing": no header, a unit other than bytes, a header we
    cannot parse, or several ranges (a server may ignore Range; multipart is not offered).
    Raises Unsatisfiable when the range starts at or past the end.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)  # "-N": the last N bytes
        if suffix == 0 or size == 0:
            raise Unsatisfiable("empty suffix range")
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    if start >= size:
        raise Unsatisfiable(f"range starts at {start}, size is {size}")
    end = size if last == "" else min(int(last) + 1, size)
    if end <= start:
        return None  # last < first: syntactically invalid, so ignored
    return ByteRange(start, end)
