"""GraphQL tag filters the store cannot run itself (NEQ, WILDCARD), matched in linear time.

A WILDCARD value is a glob where only `*` is special (`text/*` is a prefix match). It is
never turned into a regular expression: a backtracking regex over a 3,000-byte tag value
and a pattern like `a*a*a*a*b` takes minutes while holding the GIL. Here a value is split
at its stars once; a tag matches when it starts with the first piece, ends with the last
and holds the others in order between them. Taking the leftmost place of each middle
piece is always right for star-only globs, so a match costs one `bytes.find` per piece
(linear in the tag's length), whatever the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_MATCHES = ("EXACT", "WILDCARD")
MAX_TAG_FILTERS = 20  # tag filters in one `transactions` query
MAX_FILTER_VALUES = 100  # values in one tag filter
MAX_VALUE_BYTES = 4096  # one filter value (tag values are at most 3,072 bytes)


@dataclass(frozen=True)
class Glob:
    """A star-only glob, split at its stars: `pieces[0]` leads, `pieces[-1]` trails, the rest in order."""

    pieces: tuple[bytes, ...]

    @classmethod
    def of(cls, pattern: bytes) -> Glob:
        return cls(tuple(pattern.split(b"*")))

    def matches(self, value: bytes) -> bool:
        """Given a tag value, return whether the whole of it matches (linear in len(value))."""
        pieces = self.pieces
        if len(pieces) == 1:
            return value == pieces[0]
        head, tail = pieces[0], pieces[-1]
        end = len(value) - len(tail)
        if end < len(head) or not value.startswith(head) or not value.endswith(tail):
            return False
        at = len(head)
        for piece in pieces[1:-1]:
            found = value.find(piece, at, end)
            if found < 0:
                return False
            at = found + len(piece)
        return True


def exact(value: bytes) -> Glob:
    """Given a value, return the Glob matching exactly it (EXACT: `*` is literal)."""
    return Glob((value,))


@dataclass
class TagCheck:
    """A tag filter the store cannot run (NEQ or WILDCARD), applied to each row it returns."""

    name: bytes
    patterns: list[Glob]
    negated: bool

    def holds(self, tags) -> bool:
        """Given an object's tags, return whether one tag of this name has a value that (does not) match.

        NEQ, as on arweave.net: the object carries the tag, with a value none of the values match.
        """
        for tag in tags:
            if tag.name == self.name:
                hit = any(p.matches(tag.value) for p in self.patterns)
                if hit != self.negated:
                    return True
        return False


def split_tag_filters(tags) -> tuple[list[tuple[bytes, list[bytes]]], list[TagCheck]]:
    """Given the GraphQL tag filters (name, values, op, match), return (store filters, checks applied here).

    Raises ValueError (a GraphQL error for the client) for an unsupported match or a filter past the limits.
    """
    tags = tags or []
    if len(tags) > MAX_TAG_FILTERS:
        raise ValueError(f"at most {MAX_TAG_FILTERS} tag filters in one query, got {len(tags)}")
    filters, checks = [], []
    for tag in tags:
        if tag.match.value not in SUPPORTED_MATCHES:
            supported = " or ".join(SUPPORTED_MATCHES)
            raise ValueError(f"tag filter match {tag.match.value} is not supported by this node; use {supported}")
        if len(tag.values) > MAX_FILTER_VALUES:
            raise ValueError(f"a tag filter takes at most {MAX_FILTER_VALUES} values, got {len(tag.values)}")
        name, values = tag.name.encode(), [value.encode() for value in tag.values]
        if len(name) > MAX_VALUE_BYTES or any(len(value) > MAX_VALUE_BYTES for value in values):
            raise ValueError(f"tag filter names and values are at most {MAX_VALUE_BYTES} bytes")
        if tag.op.value == "EQ" and tag.match.value == "EXACT":
            filters.append((name, values))
            continue
        if not values:
            raise ValueError(f"tag filter {tag.name!r:.60} with op {tag.op.value} / match {tag.match.value} needs values")
        filters.append((name, []))  # the store narrows to objects carrying the tag at all
        make = Glob.of if tag.match.value == "WILDCARD" else exact
        checks.append(TagCheck(name, [make(v) for v in values], tag.op.value == "NEQ"))
    return filters, checks
