"""Writer process for the crash test: puts objects forever, printing each acknowledged one.

Usage: python crash_writer.py DATA_DIR SEED
Prints "ready" once the store is open, then one line per acknowledged put:
"ID SHA256HEX SIZE". The test SIGKILLs this process at a random moment.
"""

from __future__ import annotations

import hashlib
import io
import random
import sys

from permastore.protocol import ans104
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from permastore.store import Store


def payload(rng: random.Random, history: list[bytes]) -> bytes:
    """Given a random source and earlier payloads, return the next: tiny, small, medium, large or a repeat."""
    roll = rng.random()
    if history and roll < 0.1:
        return rng.choice(history)  # dedupe path: every chunk already stored
    if roll < 0.3:
        return rng.randbytes(rng.randrange(0, 6000))  # inline path: bytes inside the SQLite commit
    if roll < 0.55:
        return rng.randbytes(rng.randrange(0, 300_000))
    if roll < 0.65:
        return b"compressible text " * rng.randrange(1, 50_000)
    if roll < 0.9:
        return rng.randbytes(rng.randrange(300_000, 4 * 1024 * 1024))
    return rng.randbytes(rng.randrange(4 * 1024 * 1024, 12 * 1024 * 1024))


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    signer = Ed25519Signer(rng.randbytes(32))
    store = Store.open(data_dir)
    print("ready", flush=True)
    history: list[bytes] = []
    while True:
        data = payload(rng, history)
        if rng.random() < 0.3:
            item = ans104.build_item(signer, data, [Tag(b"Trial", str(seed).encode())])
            info = store.put_item(io.BytesIO(item))
        else:
            info = store.put_data(io.BytesIO(data), tags=[Tag(b"Trial", str(seed).encode())])
        history = (history + [data])[-5:]
        print(info.id, hashlib.sha256(data).hexdigest(), len(data), flush=True)


if __name__ == "__main__":
    main()
