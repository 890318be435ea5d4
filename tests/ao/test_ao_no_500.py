"""No item, query or dry-run body sent to the AO units gets a 500 or a non-JSON error (hypothesis,
real server, real signed items)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ao.conftest import OCTET, post_item, serve, spawned

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TAG_NAMES = ["Action", "Max-Tokens", "Seed", "Temperature", "Top-K", "Top-P", "Stop", "Payment", "Type",
             "Data-Protocol", "Module", "Scheduler", "Model", "System-Prompt", "Chat-Template", "N-Ctx",
             "Flash-Attn", "Variant", "X"]
tag_values = st.one_of(st.sampled_from(["Inference", "Info", "Process", "Message", "ao", "none", "chatml", "0",
                                        "1", "-1", "3", "1e9", "nan", "true", "maybe"]),
                       st.text(min_size=1, max_size=12))


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory, caller):
    server = serve(tmp_path_factory.mktemp("ao-fuzz") / "data")
    server.process = spawned(server, caller)
    yield server
    server.stop()


def assert_sane(reply) -> None:
    assert reply.status_code < 500 or reply.status_code == 503, (reply.status_code, reply.text[:300])
    body = reply.json()  # every answer is JSON, errors included (aoconnect parses whatever comes)
    if reply.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"]


@SETTINGS
@given(data=st.data())
def test_signed_items_of_any_shape(fuzz_node, caller, data):
    node = fuzz_node
    tags = data.draw(st.lists(st.tuples(st.sampled_from(TAG_NAMES), tag_values), max_size=8))
    target = data.draw(st.sampled_from([None, node.process, node.units["module"], "A" * 43]))
    payload = data.draw(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)))
    if data.draw(st.booleans()):  # the shape aoconnect sends, so checks past the first are reached
        kind = "Message" if target else "Process"
        tags += [("Data-Protocol", "ao"), ("Type", kind), ("Module", node.units["module"]),
                 ("Scheduler", node.units["scheduler"]), ("Model", node.model_id)]
    with node.client() as client:
        assert_sane(post_item(client, caller.item(tags, payload, target=target)))


@SETTINGS
@given(raw=st.binary(max_size=1200))
def test_raw_bytes_to_the_mu(fuzz_node, raw):
    with fuzz_node.client() as client:
        reply = client.post("/ao/mu", content=raw, headers=OCTET)
    assert_sane(reply)
    assert reply.status_code != 202 or len(raw) > 1000


queries = st.dictionaries(st.sampled_from(["process-id", "from", "to", "sort", "limit"]),
                          st.one_of(st.sampled_from(["ASC", "DESC", "0", "1", "25", "-3", ""]), st.text(max_size=50)),
                          max_size=5)


@SETTINGS
@given(message=st.one_of(st.just("A" * 43), st.text(alphabet="abc-_", min_size=1, max_size=50)), query=queries)
def test_cu_queries(fuzz_node, message, query):
    node = fuzz_node
    with node.client() as client:
        assert_sane(client.get(f"/ao/cu/result/{message}", params={"process-id": node.process, **query}))
        results = client.get(f"/ao/cu/results/{node.process}", params=query)
        assert_sane(results)
        assert isinstance(results.json()["edges"], list)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@SETTINGS
@given(body=st.one_of(json_values, st.fixed_dictionaries({
    "Target": st.one_of(st.just("P"), json_values), "Owner": json_values, "Data": json_values,
    "Tags": st.one_of(st.lists(st.fixed_dictionaries({"name": st.sampled_from(TAG_NAMES), "value": tag_values}),
                               max_size=4), json_values)})))
def test_dry_run_bodies(fuzz_node, body):
    node = fuzz_node
    if isinstance(body, dict) and body.get("Target") == "P":
        body["Target"] = node.process
    with node.client() as client:
        assert_sane(client.post("/ao/cu/dry-run", params={"process-id": node.process}, json=body))
