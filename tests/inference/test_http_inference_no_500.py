"""No input to the inference routes gets a 500 or a non-JSON error (hypothesis, real server)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inference.conftest import error_reason
from tests.inference.inference_server import start_server

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
FIELDS = ["model", "messages", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop",
          "stream", "n", "payment", "process", "settings", "system_prompt", "chat_template", "logprobs",
          "min_p", "repeat_penalty", "frequency_penalty", "max_completion_tokens"]


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    server = start_server(tmp_path_factory.mktemp("fuzz") / "data", herder={"fee_base": 1, "fee_token": 1})
    server.model_id = server.add_model(tiny_gguf)
    with server.client() as client:
        pid = client.post("/processes", json={"model": server.model_id}).json()["process"]
        client.post(f"/credits/{_node_address(server)}", json={"amount": 10**9})
    server.pid = pid
    yield server
    server.stop()


def _node_address(server) -> str:
    from permastore.protocol.wallet import address_of

    return address_of(server.store.signer.owner)


def assert_sane(reply):
    assert reply.status_code < 500 or reply.status_code in (503, 504), (reply.status_code, reply.text[:300])
    if reply.status_code >= 400:
        assert reply.headers["content-type"].startswith("application/json")
        body = reply.json()
        if reply.url.path.startswith("/v1/"):  # OpenAI's shape
            assert isinstance(body.get("error"), dict) and set(body["error"]) >= {"message", "type", "param", "code"}
        assert isinstance(error_reason(reply), str) and error_reason(reply)


def _body(data, node):
    values = {
        "model": st.one_of(st.just(node.model_id), json_values),
        "messages": st.one_of(
            st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x"]),
                                            "content": st.one_of(st.text(max_size=40), json_values)}), max_size=3),
            json_values),
        "process": st.one_of(st.just(node.pid), json_values),
    }
    names = data.draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True))
    return {name: data.draw(values.get(name, json_values)) for name in names}


@SETTINGS
@given(data=st.data())
def test_call_bodies(node, data):
    body = _body(data, node)
    path = data.draw(st.sampled_from(["/v1/chat/completions", "/v1/completions", "/processes",
                                      f"/processes/{node.pid}/messages"]))
    if body.get("stream") is True and path.startswith("/v1"):
        body["stream"] = False  # streams are checked elsewhere; here only the status matters
    with node.client() as client:
        assert_sane(client.post(path, content=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json"}))


@SETTINGS
@given(raw=st.binary(max_size=600), content_type=st.sampled_from(["application/json", "application/octet-stream", "text/plain"]))
def test_raw_bodies(node, raw, content_type):
    with node.client() as client:
        for path in ("/v1/chat/completions", "/v1/completions", "/processes", f"/credits/{'A' * 43}"):
            assert_sane(client.post(path, content=raw, headers={"Content-Type": content_type}))


@SETTINGS
@given(segment=st.text(max_size=60), key=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60))
def test_path_segments_and_keys(node, segment, key):
    a = quote(segment, safe="")
    with node.client(Authorization=f"Bearer {key}") as client:
        for method, path in (("GET", f"/results/{a}"), ("POST", f"/replay/{a}"), ("GET", f"/v1/models/{a}"),
                             ("GET", f"/credits/{a}"), ("POST", f"/processes/{a}/messages")):
            if a:
                assert_sane(client.request(method, path, json={"prompt": "x"}))
