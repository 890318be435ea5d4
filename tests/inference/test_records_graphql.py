"""Records written by calls are found through the gateway's GraphQL, over real HTTP on 127.0.0.1."""

import json

import httpx
import pytest

from inference import records
from inference.context import Inference
from inference.sampling import EngineSettings, SamplingParams
from permastore.store import Store
from tests.helpers.servers import start_server

QUERY = """
query($tags: [TagFilter!]) {
  transactions(tags: $tags, first: 100) {
    edges { node { id owner { address } tags { name value } } }
  }
}
"""


def gql(url, **tags):
    variables = {"tags": [{"name": name.replace("_", "-"), "values": [value]} for name, value in tags.items()]}
    response = httpx.post(f"{url}/graphql", json={"query": QUERY, "variables": variables}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"]["transactions"]["edges"]]


@pytest.fixture
def recorded(tmp_path, tiny_gguf):
    data = tmp_path / "data"
    store = Store.open(data)
    inference = Inference.open(store)
    try:
        model_id = inference.models.add(tiny_gguf)
        pid = inference.processes.spawn(model_id, EngineSettings(n_ctx=256, n_batch=32, n_ubatch=32, n_threads=1),
                                        system_prompt="Tell a joke on the given topic, on one line")
        sent = [inference.send(pid, "alice", messages=[{"role": "user", "content": topic}],
                               sampling=SamplingParams(max_tokens=6)) for topic in ("cats", "dogs")]
    finally:
        inference.close()
        store.close()
    return data, model_id, pid, sent


def test_records_are_found_by_graphql(tmp_path, recorded):
    data, model_id, pid, sent = recorded
    server = start_server(data, tmp_path / "server.log")
    try:
        processes_found = gql(server.url, Type="Process", Model=model_id)
        assert [node["id"] for node in processes_found] == [pid]
        messages = gql(server.url, Type="Message", Process=pid, Data_Protocol="ao")
        assert {node["id"] for node in messages} == {call.message_id for call in sent}
        nonces = {node["id"]: {t["name"]: t["value"] for t in node["tags"]}["Nonce"] for node in messages}
        assert nonces == {sent[0].message_id: "1", sent[1].message_id: "2"}
        for call in sent:
            results = gql(server.url, Type="Result", Message=call.message_id)
            assert [node["id"] for node in results] == [call.result_id]
            body = httpx.get(f"{server.url}/raw/{call.result_id}", timeout=30)
            assert body.status_code == 200
            record = json.loads(body.content)
            assert record["type"] == "Result" and record["token_ids"] == list(call.token_ids)
            assert body.content == records.canonical_json(record)
        models = gql(server.url, Type="model")
        assert [node["id"] for node in models] == [model_id]
    finally:
        assert server.stop() == 0
