"""GGUF header parsing as a pure function over a buffer (an mmap of the file, or its first bytes).

Only the header is read: metadata key/values and tensor descriptions. Big arrays of
numbers (token scores, types) are skipped by length; string arrays are decoded only
for the keys a caller asks for (the token list, to name BOS/EOS), so a 262k-token
vocabulary costs one pass over its lengths. Layout (versions 2 and 3): magic "GGUF",
u32 version, u64 tensor count, u64 key/value count, then the key/values, then per
tensor: name, u32 n_dims, u64 dims, u32 ggml type, u64 offset. Little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # version 1 (u32 lengths) predates llama.cpp's current loader
# GGUF value types -> struct format of one scalar (strings and arrays handled apart).
SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
TYPE_STRING = 8
TYPE_ARRAY = 9
MAX_STRING_BYTES = 64 << 20  # a chat template is kilobytes; anything near this is corrupt
MAX_DIMS = 8
MAX_ARRAY_NESTING = 4  # GGUF writers nest at most an array of arrays


class GGUFError(ValueError):
    """The buffer is not a well-formed GGUF header (or is cut short)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int

    @property
    def n_elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    fields: dict  # key -> value (arrays of numbers as None unless asked for)
    tensors: list[TensorInfo]
    size: int  # bytes of header read (tensor data follows, aligned)


class _Cursor:
    """Reads little-endian values from a buffer, raising GGUFError when it runs out."""

    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError("GGUF header is truncated")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def skip(self, size: int) -> None:
        if size < 0 or self.pos + size > len(self.buf):
            raise GGUFError("GGUF header is truncated")
        self.pos += size

    def string(self) -> str:
        length = self.take("<Q")
        if length > MAX_STRING_BYTES:
            raise GGUFError(f"GGUF string of {length} bytes: corrupt header")
        start = self.pos
        self.skip(length)
        return bytes(self.buf[start:self.pos]).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.take("<Q")
        self.skip(length)


def _value(cursor: _Cursor, value_type: int, keep_arrays: bool, depth: int = 0):
    if depth > MAX_ARRAY_NESTING:
        raise GGUFError("GGUF arrays nested too deep: corrupt header")
    if value_type in SCALAR_FORMATS:
        return cursor.take(SCALAR_FORMATS[value_type])
    if value_type == TYPE_STRING:
        return cursor.string()
    if value_type == TYPE_ARRAY:
        item_type = cursor.take("<I")
        count = cursor.take("<Q")
        if item_type in SCALAR_FORMATS and not keep_arrays:
            cursor.skip(count * struct.calcsize(SCALAR_FORMATS[item_type]))
            return None
        if item_type == TYPE_STRING and not keep_arrays:
            for _ in range(count):
                cursor.skip_string()
            return None
        if item_type == TYPE_ARRAY and not keep_arrays:
            for _ in range(count):
                _value(cursor, item_type, False, depth + 1)
            return None
        return [_value(cursor, item_type, keep_arrays, depth + 1) for _ in range(count)]
    raise GGUFError(f"unknown GGUF value type {value_type}")


def parse_header(buf, keep_arrays: tuple[str, ...] = ()) -> GGUFHeader:
    """Given a buffer starting at a GGUF file's first byte, return its header.

    keep_arrays names the array keys to decode (others are skipped and read as None).
    """
    cursor = _Cursor(buf)
    if bytes(buf[:4]) != MAGIC:
        raise GGUFError("not a GGUF file (bad magic)")
    cursor.skip(4)
    version = cursor.take("<I")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(f"unsupported GGUF version {version}")
    n_tensors = cursor.take("<Q")
    n_fields = cursor.take("<Q")
    fields = {}
    for _ in range(n_fields):
        key = cursor.string()
        fields[key] = _value(cursor, cursor.take("<I"), key in keep_arrays)
    tensors = []
    for _ in range(n_tensors):
        name = cursor.string()
        n_dims = cursor.take("<I")
        if n_dims > MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {n_dims} dimensions: corrupt header")
        shape = tuple(cursor.take("<Q") for _ in range(n_dims))
        ggml_type = cursor.take("<I")
        cursor.take("<Q")  # data offset: not needed to describe the model
        tensors.append(TensorInfo(name, shape, ggml_type))
    return GGUFHeader(version, fields, tensors, cursor.pos)
