"""Issue 10 point 6: models by name. Ollama-style names, signed name records, one resolver.

Real stores in temporary folders; name records by other owners are real ANS-104 items
signed with their own keys.
"""

from __future__ import annotations

import io

import pytest

from inference.context import Inference
from inference.errors import ModelNotFound, ModelNotTrusted
from inference.model_names import InvalidModelName, id_of_ref, parse_name
from permastore.protocol import ans104
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from permastore.store import Store
from tests.inference.conftest import make_gguf

ALICE = Ed25519Signer(bytes(range(1, 33)))
BOB = Ed25519Signer(bytes(range(2, 34)))
MALLORY = Ed25519Signer(bytes(range(3, 35)))


def address(signer) -> str:
    return ans104.parse_header(ans104.build_item(signer, b"x", [])).owner_address


def foreign_name_record(store: Store, signer, name: str, model_id: str, created: int) -> str:
    """Store a name record signed by someone else's key (as it would arrive from a peer or POST /tx)."""
    tags = [("App-Name", "permastore"), ("Type", "model-name"), ("Record-Version", "1"), ("Name", name),
            ("Model", model_id), ("Created", str(created))]
    item = ans104.build_item(signer, b"{}", [Tag.text(k, v) for k, v in tags])
    return store.put_item(item).id


@pytest.mark.parametrize("text, canonical", [
    ("gemma3", "gemma3:latest"),
    ("gemma3:270m", "gemma3:270m"),
    ("Gemma3:270M", "gemma3:270m"),
    ("library/gemma3:1b", "gemma3:1b"),
    ("registry.ollama.ai/library/qwen2.5:0.5b", "qwen2.5:0.5b"),
    ("myorg/tiny", "myorg/tiny:latest"),
    ("example.com:8080/myorg/tiny:v2", "example.com:8080/myorg/tiny:v2"),
    ("_x:_y", "_x:_y"),
])
def test_names_parse_as_ollama_does(text, canonical):
    assert str(parse_name(text)) == canonical


@pytest.mark.parametrize("text", [
    "", "bad name", "-lead", "gemma3:", ":tag", "a/b/c/d", "my.org/tiny", "tiny:v:1", "tiny@sha256-ab",
    "x" * 81, "tiny:" + "t" * 81, "é", "A" * 43, "A" * 43 + ":v1",
])
def test_names_ollama_refuses_are_refused(text):
    with pytest.raises(InvalidModelName):
        parse_name(text)


def test_ids_stand_for_themselves(model_id):
    assert id_of_ref(model_id) == model_id
    assert id_of_ref(model_id + ":latest") == model_id
    assert id_of_ref(model_id + ":v1") is None
    assert id_of_ref("gemma3") is None


def test_a_name_resolves_everywhere_and_process_records_keep_the_id(inference, tiny_gguf):
    model_id = inference.models.add(tiny_gguf, name="tiny:v1")
    models = inference.models
    assert models.model_id("tiny:v1") == model_id
    assert models.model_id("TINY:V1") == model_id
    assert models.model_id(model_id) == model_id
    assert models.model_id(model_id + ":latest") == model_id
    with pytest.raises(ModelNotFound, match="model 'tiny' not found"):
        models.model_id("tiny")  # tiny means tiny:latest, which is not recorded
    models.name(model_id, "tiny")
    assert models.model_id("tiny") == model_id
    assert models.model_id("tiny:latest") == model_id
    [entry] = models.list()
    assert entry.names == ("tiny:latest", "tiny:v1")
    process_id = inference.processes.spawn("tiny:v1")
    assert inference.processes.get(process_id).record.model == model_id


def test_renaming_re_points_a_name(inference, tiny_gguf, tmp_path):
    first = inference.models.add(tiny_gguf, name="tiny")
    second = inference.models.add(make_gguf(tmp_path / "other.gguf", name="other"))
    inference.models.name(second, "tiny")
    assert inference.models.model_id("tiny") == second
    names = {entry.id: entry.names for entry in inference.models.list()}
    assert names == {first: (), second: ("tiny:latest",)}
    inference.models.name(first, "tiny")  # and back, within the same millisecond too
    assert inference.models.model_id("tiny") == first


def test_a_name_is_refused_for_what_is_not_a_stored_trusted_model(tmp_path, tiny_gguf):
    store = Store.open(tmp_path / "data")
    stranger_model = store.put_item(ans104.build_item(MALLORY, tiny_gguf.read_bytes(), [Tag.text("Type", "model")])).id
    note = store.put_data(io.BytesIO(b"note"), tags=[]).id
    server_side = Inference.open(store, operator=False)
    try:
        with pytest.raises(ModelNotTrusted):
            server_side.models.name(stranger_model, "evil")
        with pytest.raises(ModelNotFound):
            server_side.models.name("A" * 43, "ghost")
        with pytest.raises(Exception, match="not tagged Type=model"):
            server_side.models.name(note, "note")
        with pytest.raises(InvalidModelName):
            server_side.models.add(tiny_gguf, name="no way")
        assert server_side.models.list() == []  # the bad name stopped the add before anything was stored
    finally:
        server_side.close()
        store.close()


def test_the_node_wallet_wins_then_the_newest_trusted_owner_and_strangers_never(tmp_path, tiny_gguf):
    store = Store.open(tmp_path / "data")
    inference = Inference.open(store, trusted_owners=[address(ALICE), address(BOB)])
    try:
        own = inference.models.add(tiny_gguf)
        other = inference.models.add(make_gguf(tmp_path / "b.gguf", name="b"))
        far_future = 99_999_999_999_999
        # Only trusted owners: the newest record wins.
        foreign_name_record(store, ALICE, "shared:latest", own, 1_000)
        foreign_name_record(store, BOB, "shared:latest", other, 2_000)
        assert inference.models.model_id("shared") == other
        # A stranger's record, however new, is nobody's word here.
        foreign_name_record(store, MALLORY, "shared:latest", own, far_future)
        foreign_name_record(store, MALLORY, "mine:latest", own, far_future)
        assert inference.models.model_id("shared") == other
        with pytest.raises(ModelNotFound):
            inference.models.model_id("mine")
        # The node wallet's record wins over any trusted owner's, even a newer one.
        inference.models.name(own, "shared")
        foreign_name_record(store, ALICE, "shared:latest", other, far_future)
        assert inference.models.model_id("shared") == own
        # Malformed records of a trusted owner are skipped (not canonical, not an ID).
        foreign_name_record(store, ALICE, "Odd:latest", own, 5)
        foreign_name_record(store, ALICE, "odd:latest", "not-an-id", 5)
        with pytest.raises(ModelNotFound):
            inference.models.model_id("odd")
    finally:
        inference.close()
        store.close()


def test_names_travel_with_the_data(tmp_path, tiny_gguf):
    """A name record copied to another node (as a peer would) names the model there, if its signer is trusted."""
    first = Store.open(tmp_path / "one")
    one = Inference.open(first)
    model_id = one.models.add(tiny_gguf, name="tiny:travel")
    record_id = one.models.names.lookup("tiny:travel").record_id
    items = [b"".join(first.item_bytes(i)) for i in (model_id, record_id)]
    node_one = one.node_address
    one.close()
    first.close()
    for trusted, expected in [((), None), ((node_one,), model_id)]:
        second = Store.open(tmp_path / f"two-{len(trusted)}")
        two = Inference.open(second, trusted_owners=trusted, operator=False)
        try:
            for item in items:
                second.put_item(item)
            if expected is None:
                with pytest.raises(ModelNotFound):
                    two.models.model_id("tiny:travel")
            else:
                assert two.models.model_id("tiny:travel") == expected
                assert [entry.names for entry in two.models.list()] == [("tiny:travel",)]
        finally:
            two.close()
            second.close()


def test_the_operator_naming_a_stored_model_approves_it(tmp_path, tiny_gguf):
    store = Store.open(tmp_path / "data")
    stranger_model = store.put_item(ans104.build_item(MALLORY, tiny_gguf.read_bytes(), [Tag.text("Type", "model")])).id
    operator, server_side = Inference.open(store), Inference.open(store, operator=False)
    try:
        assert server_side.models.list() == []
        operator.models.name(stranger_model, "theirs")
        assert [(e.id, e.names) for e in server_side.models.list()] == [(stranger_model, ("theirs:latest",))]
        assert server_side.models.get(server_side.models.model_id("theirs")).path.is_file()
    finally:
        operator.close()
        server_side.close()
        store.close()
