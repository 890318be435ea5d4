"""The node wallet on disk: an RSA-4096 JWK, created on first open with mode 0600.

`NodeWallet` owns the loaded key and the signer made from it (once, on first use).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from permastore.protocol.signers import RsaSigner
from permastore.protocol.wallet import generate_jwk
from permastore.store.errors import StoreError
from permastore.store.segments import fsync_dir

WALLET_MODE = 0o600


class NodeWallet:
    """The node's own key: given the wallet path, load (or create) it on ``load`` and sign with it
    (the signer is made on first use)."""

    def __init__(self, path: Path):
        self.path = path
        self._jwk: dict | None = None
        self._signer: RsaSigner | None = None

    def load(self) -> None:
        """Read the wallet file, creating a new key there when none exists; StoreError when unreadable."""
        self._jwk = load_or_create_wallet(self.path)

    @property
    def jwk(self) -> dict:
        if self._jwk is None:
            raise StoreError(f"node wallet {self.path} is not loaded (the Store is not open)")
        return self._jwk

    @property
    def signer(self) -> RsaSigner:
        if self._signer is None:
            # Our own wallet file (0600, written by this node): skip the slow key self-check.
            self._signer = RsaSigner(self.jwk, trusted=True)
        return self._signer


def load_or_create_wallet(path: Path) -> dict:
    """Given the wallet path, return its JWK, creating a new key there when none exists."""
    path = Path(path)
    if not path.exists():
        _create(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read node wallet {path}: {exc}") from None


def _create(path: Path) -> None:
    jwk = generate_jwk()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Security: the key is written 0600 from the start, never readable by others.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, WALLET_MODE)
    try:
        os.write(fd, json.dumps(jwk).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process made a wallet meanwhile: theirs wins, ours goes.
        os.link(tmp, path)
        fsync_dir(path.parent)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
