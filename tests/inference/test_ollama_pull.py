"""Issue 11: `POST /api/pull` fetches a model from this node's peers (`serve --peer`), every chunk proven.

Two (or three) real servers on 127.0.0.1; the official `ollama` client on the second
pulls by ID and by a name the first node knows, then generates with it; refusals are
`ollama.ResponseError` with their status, before any stream line.
"""

from __future__ import annotations

import io

import ollama
import pytest

from permastore.protocol import ans104, b64url
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from permastore.protocol.wallet import address_of
from tests.distribution.proxy import NodeProxy
from tests.inference.conftest import make_gguf
from tests.inference.inference_server import start_server

STRANGER = Ed25519Signer(bytes(range(7, 39)))
OPTIONS = {"seed": 11, "num_predict": 8}


def consume(result):
    return list(result) if not isinstance(result, ollama.ProgressResponse) else [result]


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_gguf):
    """A node holding the tiny model (named tiny:v1), a stranger's model it trusts, and a text object."""
    server = start_server(tmp_path_factory.mktemp("first") / "data",
                          herder={"trust_model_owners": [address_of(STRANGER.owner)]})
    models = server.service.inference.models
    server.model_id = models.add(tiny_gguf, name="tiny:v1")
    theirs = make_gguf(tmp_path_factory.mktemp("stranger") / "theirs.gguf", name="theirs")
    item = ans104.build_item(STRANGER, theirs.read_bytes(), [Tag.text("Type", "model")])
    server.stranger_id = server.store.put_item(item).id
    models.name(server.stranger_id, "someone/theirs:q1")
    big = make_gguf(tmp_path_factory.mktemp("big") / "big.gguf", n_ff=1024, name="big")
    server.big_id = models.add(big, name="big")  # four chunks: a format-2 L1 tx, proven chunk by chunk
    server.text_id = server.store.put_data(io.BytesIO(b"not a model " * 40000), tags=[Tag.text("Type", "notes")]).id
    yield server
    server.stop()


@pytest.fixture
def second(tmp_path, first):
    server = start_server(tmp_path / "second", peers=[first.url])
    yield server
    server.stop()


def test_pull_by_a_name_the_peer_knows_then_generate_by_it(first, second):
    local = ollama.Client(host=second.url)
    assert local.list().models == []
    progress = list(local.pull("tiny:v1", stream=True))
    statuses = [p.status for p in progress]
    digest = b64url.decode(first.model_id).hex()
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer = progress[1:-3]
    assert layer and {p.status for p in layer} == {f"pulling {digest[:12]}"}
    assert {p.digest for p in layer} == {f"sha256:{digest}"}
    size = first.store.info(first.model_id).data_size
    assert layer[-1].completed == layer[-1].total == size
    assert [p.completed or 0 for p in layer] == sorted(p.completed or 0 for p in layer)
    assert second.store.info(first.model_id).data_complete  # the bytes are here now, proven
    listed = {m.model for m in local.list().models}
    assert {"tiny:v1", f"{first.model_id}:latest"} <= listed
    reply = local.generate(model="tiny:v1", prompt="hi", options=OPTIONS)
    there = ollama.Client(host=first.url).generate(model="tiny:v1", prompt="hi", options=OPTIONS)
    assert reply.response == there.response and reply.response
    # Pulling again: nothing to fetch, the same sequence with one line at completed == total.
    again = [(p.status, p.completed) for p in local.pull("tiny:v1", stream=True)]
    assert again == [("pulling manifest", None), (f"pulling {digest[:12]}", size),
                     ("verifying sha256 digest", None), ("writing manifest", None), ("success", None)]


def test_a_model_of_several_chunks_is_proven_chunk_by_chunk(first, second):
    assert first.store.info(first.big_id).kind == "tx"
    progress = list(ollama.Client(host=second.url).pull(first.big_id, stream=True))
    layer = [p for p in progress if p.digest]
    size = first.store.info(first.big_id).data_size
    assert size > 3 * 256 * 1024 and layer[-1].completed == layer[-1].total == size
    assert progress[-1].status == "success" and second.store.info(first.big_id).data_complete
    assert ollama.Client(host=second.url).generate(model=first.big_id, prompt="hi", options=OPTIONS).done


def test_pull_by_id_without_streaming(first, second):
    local = ollama.Client(host=second.url)
    assert local.pull(first.model_id).status == "success"
    assert local.show(first.model_id).details.format == "gguf"
    assert local.chat(model=first.model_id, messages=[{"role": "user", "content": "x"}],
                      options=OPTIONS).message.content


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_models_are_404_before_any_line(second, stream):
    local = ollama.Client(host=second.url)
    for ref in ("nosuch:latest", "E" * 43):
        with pytest.raises(ollama.ResponseError) as refused:
            consume(local.pull(ref, stream=stream))
        assert refused.value.status_code == 404, refused.value.error
        assert f"'{ref}' not found on this node or its peers" in refused.value.error


def test_a_strangers_model_pulled_by_the_operator_is_approved_here(first, second):
    """The second node trusts no one but itself: pulling (from this machine) is the operator choosing the model."""
    local = ollama.Client(host=second.url)
    with pytest.raises(ollama.ResponseError):
        local.show(first.stranger_id)  # not here yet
    assert local.pull("someone/theirs:q1").status == "success"
    info = second.store.info(first.stranger_id)
    assert info.data_complete and info.owner_address == address_of(STRANGER.owner)
    assert "someone/theirs:q1" in {m.model for m in local.list().models}
    assert local.generate(model="someone/theirs:q1", prompt="hi", options=OPTIONS).done


@pytest.mark.parametrize("stream", [False, True])
def test_an_object_that_is_not_a_model_is_refused_before_its_data(first, second, stream):
    local = ollama.Client(host=second.url)
    with pytest.raises(ollama.ResponseError) as refused:
        consume(local.pull(first.text_id, stream=stream))
    assert refused.value.status_code == 400 and "not tagged Type=model" in refused.value.error
    info = second.store.info(first.text_id)
    assert info is None or not info.data_complete
    assert local.list().models == []


def test_a_peer_that_flips_bytes_gives_an_error_and_nothing_is_trusted(first, tmp_path):
    liar = NodeProxy(first.url, flip=True)
    server = start_server(tmp_path / "fooled", peers=[liar.url])
    try:
        local = ollama.Client(host=server.url)
        with pytest.raises(ollama.ResponseError) as refused:
            consume(local.pull("tiny:v1", stream=True))
        assert "could not be fetched and verified" in refused.value.error
        assert liar.flipped > 0
        info = server.store.info(first.model_id)
        assert info is None or not info.data_complete
        assert local.list().models == []
    finally:
        server.stop()
        liar.close()


def test_peers_that_name_different_models_are_refused(first, tmp_path):
    other = start_server(tmp_path / "other")
    other.service.inference.models.add(make_gguf(tmp_path / "other.gguf", name="other"), name="tiny:v1")
    both = start_server(tmp_path / "both", peers=[first.url, other.url])
    try:
        with pytest.raises(ollama.ResponseError) as refused:
            ollama.Client(host=both.url).pull("tiny:v1")
        assert refused.value.status_code == 409 and "pull by model ID" in refused.value.error
    finally:
        both.stop()
        other.stop()


def test_without_peers_a_model_not_held_is_404(tmp_path):
    alone = start_server(tmp_path / "alone")
    try:
        with pytest.raises(ollama.ResponseError) as refused:
            consume(ollama.Client(host=alone.url).pull("tiny:v1", stream=True))
        assert refused.value.status_code == 404 and "no peer configured" in refused.value.error
    finally:
        alone.stop()


def test_a_caller_on_another_machine_cannot_make_the_node_pull(first, second):
    """Security: a pull stores bytes and approves a model, so only this machine may ask for one."""
    import asyncio

    import httpx

    async def pull_from_afar(ref: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=second.app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as far:
            return await far.post("/api/pull", json={"model": ref, "stream": False})

    for ref in (first.model_id, "tiny:v1"):
        refused = asyncio.run(pull_from_afar(ref))
        assert refused.status_code == 403 and "only allowed from this machine" in refused.json()["error"]
    assert second.store.info(first.model_id) is None  # nothing was fetched
    assert ollama.Client(host=second.url).pull("tiny:v1").status == "success"  # from here it may
    assert asyncio.run(pull_from_afar("tiny:v1")).json() == {"status": "success"}  # held and trusted now
