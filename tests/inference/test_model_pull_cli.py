"""`permastore model pull MODEL --peer URL` through the real CLI (fresh OS processes) from a real server."""

from __future__ import annotations

import io

import pytest

from permastore.protocol.tags import Tag
from tests.inference.inference_server import start_server
from tests.inference.test_cli import ids_from, permastore


@pytest.fixture(scope="module")
def peer(tmp_path_factory, tiny_gguf):
    server = start_server(tmp_path_factory.mktemp("peer") / "data")
    server.model_id = server.service.inference.models.add(tiny_gguf, name="tiny:v1")
    server.text_id = server.store.put_data(io.BytesIO(b"notes " * 90000), tags=[Tag.text("Type", "notes")]).id
    yield server
    server.stop()


def test_model_pull_by_a_peers_name_then_run_it_by_that_name(peer, tmp_path):
    data = tmp_path / "data"
    _, out, err = permastore(data, "model", "pull", "tiny:v1", "--peer", peer.url, check_rc=0)
    assert out.splitlines()[-1] == peer.model_id and "name: tiny:v1" in err
    _, listing, _ = permastore(data, "model", "list", check_rc=0)
    assert listing.startswith(peer.model_id) and listing.strip().split("\t")[-1] == "tiny:v1"
    _, out, _ = permastore(data, "run", "tiny:v1", "owls", "--seed", "5", "--max-tokens", "6", check_rc=0)
    assert ids_from(out)["process"]  # ran here, from the pulled bytes, with no peer given
    _, again, _ = permastore(data, "model", "pull", peer.model_id, "--peer", peer.url, check_rc=0)
    assert again.strip() == peer.model_id  # held: nothing fetched, the same answer


def test_model_pull_refusals(peer, tmp_path):
    data = tmp_path / "data"
    rc, out, err = permastore(data, "model", "pull", "nosuch:v9", "--peer", peer.url)
    assert (rc, out) == (1, "") and "model 'nosuch:v9' not found on this node or its peers" in err
    rc, out, err = permastore(data, "model", "pull", peer.text_id, "--peer", peer.url)
    assert (rc, out) == (1, "") and "not tagged Type=model" in err
    rc, _, err = permastore(data, "model", "pull", "tiny:v1", "--peer", "ftp://x")
    assert rc != 0 and "invalid peer" in err
