"""The node's own /openapi.json tells the truth: schemathesis, every check, against a real server.

The server holds a mined L1 tx, a data item, a bundle and a manifest; their IDs are
offered to the generated requests half of the time (schemathesis dictionaries), so the
data, tx and block routes answer 200, 206, 301 and 304 as well as 400 and 404. Every route
is tested, the inference (`/v1`, `/processes`, ...), Ollama (`/api/*`), AO (`/ao/*`) and
herder routes too: this node holds no model, so a schema-valid call body is answered 404
without a model call (their generation is tested by tests/inference and tests/ao).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from permastore.protocol.bundle import build_bundle
from tests.helpers.keys import KEY_ADDRESS
from tests.helpers.servers import start_server

from .conftest import signed_item, signed_tx

CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")
SIGNED_CONFIG_FILE = Path(__file__).with_name("schemathesis-signed.toml")
JSON_ONLY_CONFIG = "schemathesis-json-only.toml"
EXAMPLES = 25


def seed(url: str, rsa_signer, ed_signer) -> dict[str, list]:
    """Store an L1 tx, items, a bundle and a manifest on the node; return the values to offer per parameter."""
    with httpx.Client(base_url=url, timeout=60) as client:
        tx = signed_tx(rsa_signer, b"openapi tx " * 100, {"Content-Type": "text/plain"})
        assert client.post("/tx", json=tx.to_json()).status_code == 200
        item = signed_item(ed_signer, b"openapi item", {"Content-Type": "text/plain"})
        item_id = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}).json()["id"]
        manifest = (b'{"manifest":"arweave/paths","version":"0.2.0","index":{"path":"a"},"paths":{"a":{"id":"%s"}}}'
                    % item_id.encode())
        raw = signed_item(ed_signer, manifest, {"Content-Type": "application/x.arweave-manifest+json"})
        manifest_id = client.post("/tx", content=raw, headers={"Content-Type": "application/octet-stream"}).json()["id"]
        bundle = signed_tx(rsa_signer, build_bundle([signed_item(ed_signer, b"bundled")]),
                           {"Bundle-Format": "binary", "Bundle-Version": "2.0.0"})
        assert client.post("/tx", json=bundle.to_json()).status_code == 200
        client.post("/mine")
        block = client.get("/block/current").json()
        offset = int(client.get(f"/tx/{tx.id}/offset").json()["offset"])
    ids = [tx.id, item_id, manifest_id, bundle.id]
    return {
        "path.object_id": ids, "path.tx_id": [tx.id, bundle.id, item_id], "path.item_id": [item_id],
        "path.address": [KEY_ADDRESS, block["reward_addr"]],
        "path.indep_hash": [block["indep_hash"]], "path.height": ["0", "1"], "path.offset": [offset, offset - 5],
        "path.subpath": ["a", "", "missing"],
    }


def toml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings and integers are spelled alike in TOML and JSON


@pytest.fixture(scope="module")
def node(tmp_path_factory, rsa_signer, ed_signer):
    """A real server holding seeded data, and a schemathesis config offering its IDs."""
    root = tmp_path_factory.mktemp("openapi")
    server = start_server(root / "data", root / "server.log", "--mine-interval", "0")
    offered = seed(server.url, rsa_signer, ed_signer)
    lines = ["", "[parameters]"]
    lines += [f'"{name}" = {{ dictionary = "{name.replace(".", "-")}", probability = 0.5 }}' for name in offered]
    for name, values in offered.items():
        lines += ["", f'[dictionaries.{name.replace(".", "-")}]', f"values = {toml_value(values)}"]
    offers = "\n".join(lines) + "\n"
    config = root / "schemathesis.toml"
    config.write_text(CONFIG_FILE.read_text() + "\n" + SIGNED_CONFIG_FILE.read_text() + offers)
    config.with_name(JSON_ONLY_CONFIG).write_text(CONFIG_FILE.read_text() + offers)
    yield server, config
    server.stop()
    assert "Traceback" not in server.log()


def run_schemathesis(config: Path, location: str, cwd: Path, *extra: str) -> None:
    """`st run` with every check and every phase; a failure prints schemathesis's report (with curl to reproduce)."""
    command = [
        str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run", location,
        "--checks", "all", "--max-examples", str(EXAMPLES), "--workers", "1",
        "--seed", "7", "--generation-database", "none", "--no-color", *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd)
    (cwd / "schemathesis-report.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    assert "passed" in result.stdout and " 0 passed" not in result.stdout


def test_every_operation_conforms_to_the_document(node, tmp_path):
    server, config = node
    run_schemathesis(config, f"{server.url}/openapi.json", tmp_path)


def _json_only(document: dict) -> dict:
    """Given the document, return it with each JSON body's signed-item twin and its `payment` field left out."""
    for methods in document["paths"].values():
        for operation in methods.values():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                content.pop("application/octet-stream", None)
                schema = content["application/json"]["schema"]
                for part in [schema, *schema.get("oneOf", [])]:
                    part.get("properties", {}).pop("payment", None)
    return document


def test_the_json_bodies_are_described_exactly(node, tmp_path):
    """The call routes without schemathesis-signed.toml's allowance: every schema-valid JSON body gets past validation.

    Left out: the signed item twin of each JSON body (random bytes are not a signed item),
    `payment` (JSON Schema's integer includes 5.0, which money refuses) and the herder's and
    AO MU's routes, which take signed items only.
    """
    server, config = node
    document = tmp_path / "openapi-json-only.json"
    document.write_text(json.dumps(_json_only(httpx.get(f"{server.url}/openapi.json").json())))
    run_schemathesis(config.with_name(JSON_ONLY_CONFIG), str(document), tmp_path, "--url", server.url,
                     "--include-path-regex", r"^/(v1|processes|results|replay|credits|api|ao/cu)(/|$)")


def test_the_document_lists_what_the_issue_asks_for(node):
    server, _ = node
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path in ("/height", "/current_block", "/chunk/{offset}", "/chunk/{offset}/data", "/{object_id}", "/raw/{object_id}",
                 "/tx/{tx_id}/data", "/{object_id}/{subpath}"):
        assert "head" in paths[path], path
    assert "422" not in json.dumps({p: list(ops) for p, ops in paths.items()})  # validation failures are 400s
    assert {"400", "404", "416", "206"} <= set(paths["/{object_id}"]["get"]["responses"])
    assert set(paths["/tx"]["post"]["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    wrong = httpx.request("DELETE", f"{server.url}/graphql")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD, POST" and wrong.json()["error"]
    assert httpx.get(f"{server.url}/tx").status_code == 405  # not "invalid ID" from the `/{id}` route


def test_the_inference_and_unit_routes_document_their_bodies_and_errors(node):
    server, _ = node
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    chat = paths["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["required"] == ["model", "messages"]
    assert "message" in chat["responses"]["400"]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]
    assert paths["/credits/{address}"]["get"]["parameters"][0]["schema"]["pattern"]
    operation_ids = [operation["operationId"] for methods in paths.values() for operation in methods.values()]
    assert len(operation_ids) == len(set(operation_ids))  # OpenAPI: unique (AO's monitor had one for two methods)
    wrong = httpx.get(f"{server.url}/ao/cu/dry-run")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST" and wrong.json()["error"]


def test_whole_number_floats_are_counts_but_never_money(node):
    """JSON Schema's integer includes 40.0: counts sent as floats are taken (404: no such model here), money is not."""
    server, _ = node
    with httpx.Client(base_url=server.url, timeout=30) as client:
        completion = client.post("/v1/completions", json={"model": "nope", "prompt": "x", "top_k": 40.0, "seed": 7.0,
                                                          "max_tokens": 3.0})
        assert completion.status_code == 404, completion.text
        spawn = client.post("/processes", json={"model": "nope", "settings": {"n_ctx": 512.0, "n_threads": 1.0}})
        assert spawn.status_code == 404, spawn.text
        embed = client.post("/api/embed", json={"model": "nope", "input": "x", "dimensions": 8.0})
        assert embed.status_code == 404, embed.text
        paid = client.post("/v1/completions", json={"model": "nope", "prompt": "x", "payment": 5.0})
        assert paid.status_code == 400 and "payment" in paid.json()["error"]["message"]
        credit = client.post(f"/credits/{KEY_ADDRESS}", json={"amount": 1.0})
        assert credit.status_code == 400 and "integer" in credit.json()["error"]
