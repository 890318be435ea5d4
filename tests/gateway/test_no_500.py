"""No input gets a 500 or a non-JSON error: hypothesis over every route's inputs (in-process app)."""

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from permastore.protocol import b64url

from .conftest import LOCAL_CLIENT, make_config, signed_item, signed_tx

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

GET_ROUTES = [
    "/{a}", "/raw/{a}", "/{id}/{a}", "/{a}/{b}", "/tx/{a}", "/tx/{a}/status", "/tx/{a}/offset", "/tx/{a}/data",
    "/tx/{a}/{b}", "/tx/{id}/{a}", "/chunk/{a}", "/chunk/{a}/data", "/block/height/{a}", "/block/hash/{a}",
    "/wallet/{a}/balance", "/wallet/{a}/last_tx", "/price/{a}", "/price/{a}/{b}", "/mint/{a}/{b}", "/mine/{a}",
    "/graphql?query={a}", "/unconfirmed_tx/{a}", "/item/{a}/header", "/item/{a}/{b}",
]  # fmt: skip


@pytest.fixture(scope="module")
def node(tmp_path_factory, rsa_signer):
    """One app for the whole module, holding a tx and an item the strategies can aim at."""
    app = create_app(make_config(tmp_path_factory.mktemp("fuzz")))
    with TestClient(app, raise_server_exceptions=False, client=LOCAL_CLIENT) as client:
        tx = signed_tx(rsa_signer, b"fuzz target " * 30000, {"Content-Type": "text/plain"})
        assert client.post("/tx", json=tx.to_json()).status_code == 200
        item = signed_item(rsa_signer, b"item target")
        item_id = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}).json()["id"]
        client.post("/mine")
        yield client, [tx.id, item_id]


def segment(ids):
    return st.one_of(
        st.text(max_size=80),
        st.sampled_from(ids),
        st.integers(min_value=-(10**50), max_value=10**80).map(str),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=40, max_size=90),
    )


def assert_sane(response, method="GET"):
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400 and method != "HEAD":
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()  # every error is JSON
        assert isinstance(body.get("error"), str) and body["error"]


@SETTINGS
@given(data=st.data())
def test_get_routes(node, data):
    client, ids = node
    template = data.draw(st.sampled_from(GET_ROUTES))
    path = template.format(
        a=quote(data.draw(segment(ids)), safe=""), b=quote(data.draw(segment(ids)), safe=""), id=ids[0]
    )
    headers = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "Range": st.one_of(st.text(max_size=30), st.builds("bytes={}-{}".format, st.integers(-5, 10**7), st.integers(-5, 10**7))),
                "If-None-Match": st.one_of(st.text(max_size=50), st.sampled_from(ids).map('"{}"'.format)),
            },
        ).map(lambda h: {k: v.encode("latin-1", "ignore") for k, v in h.items()})
    )
    method = data.draw(st.sampled_from(["GET", "HEAD"]))
    assert_sane(client.request(method, path, headers=headers, follow_redirects=False), method)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(data=st.data())
def test_post_tx_json(node, data, rsa_signer):
    client, ids = node
    base = signed_tx(rsa_signer, b"base").to_json()
    field = data.draw(st.sampled_from(sorted(base)))
    doc = dict(base, **{field: data.draw(json_values)}) if data.draw(st.booleans()) else data.draw(json_values)
    assert_sane(client.post("/tx", content=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}))


@SETTINGS
@given(body=st.binary(max_size=3000))
def test_post_raw_bodies(node, body):
    client, _ = node
    for path, content_type in (("/tx", "application/octet-stream"), ("/tx", "application/json"), ("/chunk", "application/json"), ("/graphql", "application/json")):
        assert_sane(client.post(path, content=body, headers={"Content-Type": content_type}))


@SETTINGS
@given(data=st.data())
def test_post_chunk_fields(node, data):
    client, _ = node
    field_value = st.one_of(json_values, st.binary(max_size=64).map(b64url.encode))
    doc = {name: data.draw(field_value) for name in ("data_root", "data_size", "data_path", "offset", "chunk")}
    assert_sane(client.post("/chunk", json=doc))


@SETTINGS
@given(query=st.text(max_size=200), variables=json_values)
def test_graphql_inputs(node, query, variables):
    client, _ = node
    assert_sane(client.post("/graphql", json={"query": query, "variables": variables}))
    tags_query = "query($t: [TagFilter!], $f: Int, $a: String) { transactions(tags: $t, first: $f, after: $a) { edges { cursor } } }"
    assert_sane(client.post("/graphql", json={"query": tags_query, "variables": {"t": variables, "f": variables, "a": variables}}))
    blocks_query = "query($h: BlockFilter, $f: Int, $a: String, $i: [String!]) { blocks(height: $h, first: $f, after: $a, ids: $i) { edges { cursor } } block(id: $a) { id } }"
    assert_sane(client.post("/graphql", json={"query": blocks_query, "variables": {"h": variables, "f": variables, "a": variables, "i": variables}}))


def test_oversized_bodies_get_413(tmp_path):
    app = create_app(make_config(tmp_path, max_tx_body=1000, max_item_body=2000, max_chunk_body=1000, max_graphql_body=100))
    with TestClient(app, raise_server_exceptions=False, client=LOCAL_CLIENT) as client:
        for path, size, content_type in (("/tx", 1001, "application/json"), ("/tx", 2001, "application/octet-stream"), ("/chunk", 1001, "application/json"), ("/graphql", 101, "application/json")):
            response = client.post(path, content=b"x" * size, headers={"Content-Type": content_type})
            assert response.status_code == 413, (path, response.text)
            assert response.json()["error"]
        # Without Content-Length (chunked transfer) the limit holds too.
        response = client.post("/tx", content=iter([b"x" * 600, b"x" * 600]), headers={"Content-Type": "application/json"})
        assert response.status_code == 413
