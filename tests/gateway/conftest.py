"""Fixtures for gateway tests: the app in-process (real store in a tmp folder) and signed uploads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import GatewayConfig
from permastore.protocol import ans104, merkle
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign

LOCAL_CLIENT = ("127.0.0.1", 50000)  # the in-process app sees a loopback client, as a local script is



def make_config(tmp_path: Path, **overrides) -> GatewayConfig:
    return GatewayConfig(data_dir=tmp_path / "data", mine_interval=0, **overrides)


@pytest.fixture
def client(tmp_path):
    """A TestClient over a fresh node (mining only on /mine)."""
    app = create_app(make_config(tmp_path))
    with TestClient(app, raise_server_exceptions=False, client=LOCAL_CLIENT) as test_client:
        yield test_client


def tags_of(pairs: dict[str, str]) -> list[Tag]:
    return [Tag(name.encode(), value.encode()) for name, value in pairs.items()]


def signed_tx(signer, data: bytes, tags: dict[str, str] | None = None, last_tx: bytes = b"", **fields) -> Transaction:
    """Return a signed format-2 tx carrying data inline."""
    tx = Transaction(format=2, data=data, data_size=len(data), tags=tags_of(tags or {}), last_tx=last_tx, **fields)
    return sign(tx, signer)


def header_only(tx: Transaction) -> dict:
    """Return the tx JSON without its data, as arweave-js posts a chunked upload."""
    return dataclasses.replace(tx, data=b"").to_json()


def chunk_posts(tx: Transaction, data: bytes) -> list[dict]:
    """Return the POST /chunk bodies for every chunk of data, as arweave-js's uploader sends them."""
    from permastore.protocol import b64url

    chunks = merkle.chunks_for(data)
    proofs = merkle.build_proofs(chunks)
    return [
        {
            "data_root": b64url.encode(tx.data_root),
            "data_size": str(tx.data_size),
            "data_path": b64url.encode(proof.proof),
            "offset": str(proof.offset),
            "chunk": b64url.encode(data[chunk.min_byte_range : chunk.max_byte_range]),
        }
        for chunk, proof in zip(chunks, proofs)
    ]


def signed_item(signer, data: bytes, tags: dict[str, str] | None = None) -> bytes:
    return ans104.build_item(signer, data, tags_of(tags or {}))
