"""Fixtures for distribution tests: real `permastore serve` nodes on 127.0.0.1 and signed objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign
from tests.helpers.keys import seed_wallet
from tests.helpers.servers import RunningServer, start_server


def seeded(folder: Path, jwk: dict) -> Path:
    """Given a data folder, put the test wallet there (no RSA-4096 generation per node); return it."""
    return seed_wallet(folder, jwk)


class Nodes:
    """Starts `permastore serve` processes in their own data folders under tmp; stops them all."""

    def __init__(self, tmp_path: Path, jwk: dict):
        self.tmp_path = tmp_path
        self.jwk = jwk
        self.running: list[RunningServer] = []

    def start(self, name: str, *extra: str) -> RunningServer:
        folder = seeded(self.tmp_path / name, self.jwk)
        server = start_server(folder, self.tmp_path / f"{name}.{len(self.running)}.log", "--mine-interval", "0", *extra)
        self.running.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.running:
            try:
                server.stop()
            except AssertionError:
                pass


@pytest.fixture
def nodes(tmp_path, jwk):
    started = Nodes(tmp_path, jwk)
    yield started
    started.stop_all()


def tags_of(pairs: dict[str, str]) -> list[Tag]:
    return [Tag(name.encode(), value.encode()) for name, value in pairs.items()]


def claimed_tx(signer, data_size: int, data_root: bytes = b"\x07" * 32, **fields) -> Transaction:
    """Return a signed format-2 header that claims data_size bytes under data_root, with no data."""
    return sign(Transaction(format=2, data_size=data_size, data_root=data_root, **fields), signer)


def signed_tx(signer, data: bytes, tags: dict[str, str] | None = None) -> Transaction:
    return sign(Transaction(format=2, data=data, tags=tags_of(tags or {})), signer)


def rss_bytes(pid: int) -> int:
    """Given a process ID, return its resident set size in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")
