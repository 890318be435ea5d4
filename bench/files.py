"""Files for the benchmarks: incompressible content of a given size, and byte-for-byte comparison."""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 8 * 1024 * 1024


def write_random(path: Path, size: int) -> None:
    """Given a path and a size, write that many random (incompressible) bytes there."""
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(BLOCK, left))
            out.write(block)
            left -= len(block)
        out.flush()


def same_bytes(a: Path, b: Path) -> bool:
    """Given two files, return True when they hold the same bytes."""
    with open(a, "rb") as x, open(b, "rb") as y:
        while True:
            one, two = x.read(BLOCK), y.read(BLOCK)
            if one != two:
                return False
            if not one:
                return True
