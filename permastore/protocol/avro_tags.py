"""ANS-104 tags: an Avro array of records {name: bytes, value: bytes}.

Avro writes an array as blocks: a zigzag-varint item count, the items, and a
zero count at the end. A negative count means "-count items follow, preceded by
the block's byte size" (goar writes these). Each bytes field is a zigzag-varint
length followed by the bytes. No tags at all is written as zero bytes, as
arbundles does.
"""

from .errors import LimitExceeded, MalformedData
from .tags import Tag

# ANS-104's limits. arbundles 0.11 also caps the whole tag block at 4096 bytes, so an item
# with more tag bytes is valid here (and by the spec) but refused by that client.
MAX_TAGS = 128
MAX_NAME_BYTES = 1024
MAX_VALUE_BYTES = 3072
MAX_VARINT_BYTES = 10
# Largest tag block the limits allow (every varint at its widest), so a header
# that declares more can be refused before its bytes are read.
MAX_TAGS_BYTES = 2 * MAX_VARINT_BYTES + MAX_TAGS * (MAX_NAME_BYTES + MAX_VALUE_BYTES + 3 * MAX_VARINT_BYTES)

__all__ = ["Tag", "encode_tags", "decode_tags", "check_limits"]


def check_limits(tags: list[Tag]) -> None:
    """Given tags, return None when they are within ANS-104 limits; raise LimitExceeded otherwise."""
    if len(tags) > MAX_TAGS:
        raise LimitExceeded(f"too many tags: {len(tags)} (at most {MAX_TAGS})")
    for index, tag in enumerate(tags):
        _check_tag(index, len(tag.name), len(tag.value))


def _check_tag(index: int, name_size: int, value_size: int) -> None:
    if not 0 < name_size <= MAX_NAME_BYTES:
        raise LimitExceeded(f"tag {index} name is {name_size} bytes (must be 1..{MAX_NAME_BYTES})")
    if not 0 < value_size <= MAX_VALUE_BYTES:
        raise LimitExceeded(f"tag {index} value is {value_size} bytes (must be 1..{MAX_VALUE_BYTES})")


def _encode_long(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _encode_bytes(data: bytes) -> bytes:
    return _encode_long(len(data)) + data


def encode_tags(tags: list[Tag]) -> bytes:
    """Given tags within the limits, return their Avro bytes (empty for no tags)."""
    check_limits(tags)
    if not tags:
        return b""
    body = b"".join(_encode_bytes(tag.name) + _encode_bytes(tag.value) for tag in tags)
    return _encode_long(len(tags)) + body + _encode_long(0)


class _Reader:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0

    def long(self) -> int:
        result = 0
        for shift in range(0, 7 * MAX_VARINT_BYTES, 7):
            if self.pos >= len(self.buf):
                raise MalformedData("tag bytes end inside a number")
            byte = self.buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)
        raise MalformedData("tag bytes hold a number longer than 10 bytes")

    def length(self, what: str, index: int) -> int:
        size = self.long()
        if size < 0:
            raise MalformedData(f"tag {index} {what} has negative length {size}")
        return size

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.buf):
            raise MalformedData("tag bytes end inside a name or value")
        data = bytes(self.buf[self.pos : self.pos + size])
        self.pos += size
        return data


def _read_tag(reader: _Reader, index: int) -> Tag:
    name_size = reader.length("name", index)
    # Limits are checked before reading so a hostile length cannot make us slice huge buffers.
    _check_tag(index, name_size, 1)
    name = reader.take(name_size)
    value_size = reader.length("value", index)
    _check_tag(index, name_size, value_size)
    return Tag(name, reader.take(value_size))


def decode_tags(buf: bytes) -> list[Tag]:
    """Given Avro tag bytes (positive or negative block counts), return the tags; raise on any flaw."""
    if len(buf) == 0:
        return []
    reader = _Reader(buf)
    tags: list[Tag] = []
    while True:
        count = reader.long()
        if count == 0:
            break
        if count < 0:
            count = -count
            block_size = reader.length("block", len(tags))
            block_end = reader.pos + block_size
        else:
            block_end = None
        if len(tags) + count > MAX_TAGS:
            raise LimitExceeded(f"too many tags: more than {MAX_TAGS}")
        for _ in range(count):
            tags.append(_read_tag(reader, len(tags)))
        if block_end is not None and reader.pos != block_end:
            raise MalformedData("tag block size does not match its contents")
    if reader.pos != len(buf):
        raise MalformedData(f"{len(buf) - reader.pos} stray bytes after the tags")
    return tags
