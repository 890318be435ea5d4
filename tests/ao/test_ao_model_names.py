"""With models by name (issue 10 point 6) merged, an AO spawn's `Model` tag may be a name: the Process record keeps the ID."""

from __future__ import annotations

import json

from tests.ao.conftest import inference_tags, item_id, post_item, spawned


def test_a_spawn_may_name_its_model_by_name(node, caller):
    node.service.inference.models.name(node.model_id, "tiny:ao")
    process = spawned(node, caller, [("Model", "tiny:ao")])
    raw = caller.message(process, inference_tags(), b"hello")
    with node.client() as client:
        assert post_item(client, raw).status_code == 202
        result = client.get(f"/ao/cu/result/{item_id(raw)}", params={"process-id": process}).json()
    record = result["Output"]["record"]
    shown = json.loads(b"".join(node.store.read(record["process"])))
    assert shown["model"] == node.model_id and result["Output"]["data"] is not None
