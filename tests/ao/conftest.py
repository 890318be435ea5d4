"""Fixtures for the AO unit tests: a real node on 127.0.0.1 with the tiny model, and signed AO items.

Items are built the way aoconnect 0.0.98 builds them (caller tags first, then SDK,
Data-Protocol, Variant, Type, and for a spawn Module, Scheduler, Timestamp), signed with
a fresh RSA-4096 wallet, and posted raw to the MU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from permastore.protocol import ans104, b64url
from permastore.protocol.signers import RsaSigner
from permastore.protocol.tags import Tag
from permastore.protocol.wallet import address_of, generate_jwk
from tests.inference.inference_server import InferenceServer, start_server

REPO = Path(__file__).resolve().parents[2]
TINY_GGUF = REPO / "fixtures" / "tiny-llama.gguf"
OCTET = {"Content-Type": "application/octet-stream"}
PUBLIC_URL = "http://ao-node.test:1984"


@dataclass
class Caller:
    """A wallet that signs AO items."""

    signer: RsaSigner

    @property
    def address(self) -> str:
        return address_of(self.signer.owner)

    def item(self, tags: list[tuple[str, str]], data: bytes = b" ", target: str | None = None) -> bytes:
        return ans104.build_item(self.signer, data, [Tag.text(n, v) for n, v in tags],
                                 target=b64url.decode(target) if target else None)

    def spawn(self, module: str, scheduler: str, tags: list[tuple[str, str]] = (), data: bytes = b" ") -> bytes:
        ao = [("SDK", "aoconnect"), ("Data-Protocol", "ao"), ("Variant", "ao.TN.1"), ("Type", "Process"),
              ("Module", module), ("Scheduler", scheduler), ("Timestamp", "1700000000000")]
        return self.item([*tags, *ao], data)

    def message(self, process: str, tags: list[tuple[str, str]], data: bytes) -> bytes:
        ao = [("SDK", "aoconnect"), ("Data-Protocol", "ao"), ("Variant", "ao.TN.1"), ("Type", "Message")]
        return self.item([*tags, *ao], data, target=process)


def item_id(raw: bytes) -> str:
    return ans104.parse_header(raw).id


def inference_tags(max_tokens: int = 4, seed: int = 1) -> list[tuple[str, str]]:
    return [("Action", "Inference"), ("Max-Tokens", str(max_tokens)), ("Seed", str(seed))]


@pytest.fixture(scope="session")
def caller() -> Caller:
    return Caller(RsaSigner(generate_jwk()))


@pytest.fixture(scope="session")
def stranger() -> Caller:
    return Caller(RsaSigner(generate_jwk()))


def serve(data_dir: Path, herder: dict | None = None, **config) -> InferenceServer:
    """Start a node with the tiny model added by its operator; return it (with model_id, units)."""
    server = start_server(data_dir, herder=herder or {"workers": 1}, **config)
    server.model_id = server.add_model(TINY_GGUF)
    with server.client() as client:
        server.units = client.get("/ao").json()
    return server


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A node with fees off, its public URL set."""
    server = serve(tmp_path_factory.mktemp("ao") / "data", public_url=PUBLIC_URL)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def paid_node(tmp_path_factory):
    """A node charging for calls (fee base 100, 2 per token)."""
    server = serve(tmp_path_factory.mktemp("ao-paid") / "data", {"workers": 1, "fee_base": 100, "fee_token": 2})
    yield server
    server.stop()


def post_item(client: httpx.Client, raw: bytes, path: str = "/ao/mu") -> httpx.Response:
    return client.post(path, content=raw, headers=OCTET)


def spawned(node: InferenceServer, caller: Caller, tags: list[tuple[str, str]] | None = None,
            data: bytes = b" ") -> str:
    """Spawn a llama process on the node's model; return its AO process ID."""
    raw = caller.spawn(node.units["module"], node.units["scheduler"], tags or [("Model", node.model_id)], data)
    with node.client() as client:
        reply = post_item(client, raw)
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"message": "Processing DataItem", "id": item_id(raw)}
    return item_id(raw)
