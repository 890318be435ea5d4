"""Models by name through the real CLI (fresh OS processes) and a real server's OpenAI and AO-style routes."""

from __future__ import annotations

import json

import openai
import pytest

from permastore.protocol import ans104
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from tests.inference.conftest import make_gguf
from tests.inference.inference_server import start_server
from tests.inference.test_cli import ids_from, permastore

OWNER = Ed25519Signer(bytes(range(7, 39)))


def test_model_add_with_a_name_then_name_list_and_run(tmp_path, tiny_gguf):
    data = tmp_path / "data"
    _, out, err = permastore(data, "model", "add", str(tiny_gguf), "--name", "Tiny:V1", check_rc=0)
    model_id = out.strip()
    assert len(model_id) == 43 and "name: tiny:v1" in err
    _, out, _ = permastore(data, "model", "name", model_id, "tiny", check_rc=0)
    assert out.strip() == f"tiny:latest\t{model_id}"
    _, out, _ = permastore(data, "model", "name", "tiny:v1", "org/tiny:x", check_rc=0)  # by name too
    assert out.strip() == f"org/tiny:x\t{model_id}"
    _, listing, _ = permastore(data, "model", "list", check_rc=0)
    assert listing.strip().split("\t")[-1] == "org/tiny:x,tiny:latest,tiny:v1"
    results = {}
    for ref in ("tiny", "tiny:latest", model_id, f"{model_id}:latest"):
        _, out, _ = permastore(data, "run", ref, "owls", "--seed", "5", "--max-tokens", "6", check_rc=0)
        results[ref] = out.split("\nprocess:")[0]
        process = ids_from(out)["process"]
        rc, shown, _ = permastore(data, "get", process)
        assert json.loads(shown)["model"] == model_id  # the Process record keeps the ID
    assert len(set(results.values())) == 1


def test_bad_names_and_unknown_models_fail_clearly(tmp_path, tiny_gguf):
    data = tmp_path / "data"
    rc, out, err = permastore(data, "model", "add", str(tiny_gguf), "--name", "no way")
    assert rc == 1 and out == "" and "'no way' is not a valid model name" in err
    rc, listing, _ = permastore(data, "model", "list")
    assert (rc, listing) == (0, "")  # the refused add stored nothing
    _, out, _ = permastore(data, "model", "add", str(tiny_gguf), check_rc=0)
    rc, _, err = permastore(data, "run", "nosuch:model", "hi")
    assert rc == 1 and "model 'nosuch:model' not found" in err
    rc, _, err = permastore(data, "model", "name", "nosuch", "x")
    assert rc == 1 and "model 'nosuch' not found" in err
    rc, _, err = permastore(data, "model", "name", out.strip(), "A" * 43)
    assert rc == 1 and "would read as a model ID" in err


def test_the_cli_trusts_the_owners_of_herder_json(tmp_path, tiny_gguf):
    """A name signed by an owner trusted in data/herder.json resolves on the CLI as on the server."""
    data = tmp_path / "data"
    _, out, _ = permastore(data, "model", "add", str(tiny_gguf), check_rc=0)
    model_id = out.strip()
    tags = [("App-Name", "permastore"), ("Type", "model-name"), ("Record-Version", "1"), ("Name", "theirs:latest"),
            ("Model", model_id), ("Created", "1")]
    item = ans104.build_item(OWNER, b"{}", [Tag.text(k, v) for k, v in tags])
    (tmp_path / "item").write_bytes(item)
    permastore(data, "put", "--raw", str(tmp_path / "item"), check_rc=0)
    rc, _, err = permastore(data, "run", "theirs", "hi", "--max-tokens", "2")
    assert rc == 1 and "not found" in err
    owner = ans104.parse_header(item).owner_address
    (data / "herder.json").write_text(json.dumps({"trust_model_owners": [owner]}))
    permastore(data, "run", "theirs", "hi", "--max-tokens", "2", check_rc=0)


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    server = start_server(tmp_path_factory.mktemp("names") / "data")
    models = server.service.inference.models
    server.model_id = models.add(tiny_gguf, name="tiny:v1")
    models.name(server.model_id, "tiny")
    yield server
    server.stop()


def test_openai_and_process_routes_take_names(node, tmp_path):
    with openai.OpenAI(base_url=f"{node.url}/v1", api_key="local", max_retries=0) as client:
        listed = {m.id: m.model_extra["names"] for m in client.models.list().data}
        assert listed[node.model_id] == ["tiny:latest", "tiny:v1"]
        assert client.models.retrieve("tiny:v1").id == node.model_id
        node.service.inference.models.name(node.model_id, "org/tiny:x")
        assert client.models.retrieve("org/tiny:x").id == node.model_id  # a name with a namespace: a '/'
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("nosuch")
        by = {}
        for ref in ("tiny", "tiny:v1", node.model_id, f"{node.model_id}:latest"):
            reply = client.completions.create(model=ref, prompt="Once", max_tokens=6, seed=3)
            assert reply.model == ref
            by[ref] = reply.choices[0].text
            record = reply.model_extra["record"]
            process = node.service.inference.processes.get(record["process"])
            assert process.record.model == node.model_id
        assert len(set(by.values())) == 1
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(model="nosuch", messages=[{"role": "user", "content": "x"}])
        assert "model 'nosuch' not found" in refused.value.response.text
    with node.client() as http:
        spawned = http.post("/processes", json={"model": "tiny:v1"})
        assert spawned.status_code == 201, spawned.text
        assert node.service.inference.processes.get(spawned.json()["process"]).record.model == node.model_id
    # Re-pointing the name: the next call by name runs the other model.
    other = node.service.inference.models.add(make_gguf(tmp_path / "other.gguf", name="other"))
    node.service.inference.models.name(other, "tiny:v1")
    with openai.OpenAI(base_url=f"{node.url}/v1", api_key="local", max_retries=0) as client:
        reply = client.completions.create(model="tiny:v1", prompt="Once", max_tokens=2, seed=3)
        assert node.service.inference.processes.get(reply.model_extra["record"]["process"]).record.model == other
    node.service.inference.models.name(node.model_id, "tiny:v1")
