"""HTTP Range headers (RFC 9110 section 14): one range or several (multipart/byteranges).

As nginx does: a unit other than `bytes` is ignored (the whole object is sent); a `bytes`
header that does not parse, or whose ranges all lie past the end, is refused with 416.
Positions are only ever compared with the object's size, never converted whole: a
5,000-digit number is just "past the end", not an integer Python must build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RANGES = 32  # more ranges than this in one request: the whole object is sent instead (RFC 9110 14.1.1)
MAX_POSITION_DIGITS = 19  # below 2**63: longer digit strings are positions past any object's end
RANGE_SPEC = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)", re.ASCII)


class Unsatisfiable(ValueError):
    """No asked range overlaps the representation, or the bytes ranges do not parse: answer 416."""


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


def _position(digits: str, size: int) -> int:
    """Given ASCII digits, return their value, or size + 1 when they name a place past any end."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_POSITION_DIGITS else size + 1


def _magnitude(digits: str) -> tuple[int, str]:
    """Given ASCII digits, return a key that orders them by value without converting them."""
    digits = digits.lstrip("0") or "0"
    return len(digits), digits


def _one_range(spec: str, size: int) -> ByteRange | None:
    """Given one range-spec, return the bytes it selects, None when it lies past the end; Unsatisfiable when malformed."""
    match = RANGE_SPEC.fullmatch(spec.strip(" \t"))
    if match is None or match.group(0) == "-" or not any(match.groups()):
        raise Unsatisfiable(f"malformed range {spec[:40]!r}")
    first, last = match.groups()
    if first == "":  # "-N": the last N bytes
        suffix = _position(last, size)
        return ByteRange(max(0, size - suffix), size) if suffix > 0 and size > 0 else None
    start = _position(first, size)
    if last != "" and _magnitude(last) < _magnitude(first):
        raise Unsatisfiable(f"range {spec[:40]!r} ends before it starts")
    if start >= size:
        return None
    end = size if last == "" else min(_position(last, size) + 1, size)
    return ByteRange(start, end)


def parse_ranges(header: str | None, size: int) -> list[ByteRange] | None:
    """Given a Range header and the full size, return the ranges to send, in the order asked.

    None means "send the whole thing": no header, a unit other than bytes, more than
    MAX_RANGES ranges, or ranges that overlap (a server may ignore Range; overlapping
    ranges would let one request multiply the bytes sent). Raises Unsatisfiable when the
    header does not parse or no range overlaps the object.
    """
    if not header:
        return None
    unit, equals, spec = header.strip(" \t").partition("=")
    if not equals or unit.strip(" \t").lower() != "bytes":
        return None
    specs = [part for part in spec.split(",") if part.strip(" \t")]  # empty list elements are allowed
    if not specs:
        raise Unsatisfiable("no range given")
    if len(specs) > MAX_RANGES:
        return None
    found = [r for r in (_one_range(part, size) for part in specs) if r is not None]
    if not found:
        raise Unsatisfiable(f"no range starts before the end ({size} bytes)")
    ordered = sorted(found, key=lambda r: r.start)
    if any(later.start < earlier.end for earlier, later in zip(ordered, ordered[1:])):
        return None
    return found


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Given a Range header and the full size, return the one range asked for, or None for the whole object.

    Several ranges also give None here (callers that serve multipart use parse_ranges).
    """
    ranges = parse_ranges(header, size)
    return ranges[0] if ranges is not None and len(ranges) == 1 else None


def multipart_parts(ranges: list[ByteRange], size: int, content_type: str, boundary: str) -> list[tuple[bytes, ByteRange]]:
    """Given ranges, return (the part's preamble, its range) for a multipart/byteranges body, in order."""
    parts = []
    for span in ranges:
        preamble = (
            f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {span.content_range(size)}\r\n\r\n"
        ).encode("latin-1")
        parts.append((preamble, span))
    return parts


def multipart_trailer(boundary: str) -> bytes:
    """Given the boundary, return the closing delimiter of a multipart/byteranges body."""
    return f"\r\n--{boundary}--\r\n".encode("latin-1")
