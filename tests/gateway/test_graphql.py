"""POST/GET /graphql with the ar.io schema: the in-process app, and a real server for hostile queries."""

import json

from permastore.protocol import b64url
from tests.helpers.keys import KEY_ADDRESS

from .conftest import signed_item, signed_tx

QUERY = """
query($tags: [TagFilter!], $first: Int, $after: String, $owners: [String!], $sort: SortOrder) {
  transactions(tags: $tags, first: $first, after: $after, owners: $owners, sort: $sort) {
    pageInfo { hasNextPage }
    edges { cursor node {
      id anchor signature recipient
      owner { address key }
      fee { winston ar } quantity { winston ar }
      data { size type }
      tags { name value }
      block { id timestamp height previous }
      bundledIn { id }
    } }
  }
}
"""


def gql(client, query: str, **variables) -> dict:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_query_by_tag_with_paging_and_blocks(client, rsa_signer, ed_signer):
    txs = [signed_tx(rsa_signer, f"doc {n}".encode(), {"App-Name": "gql-test", "N": str(n)}, reward=1000) for n in range(3)]
    for tx in txs:
        assert client.post("/tx", json=tx.to_json()).status_code == 200
    other = signed_item(ed_signer, b"elsewhere", {"App-Name": "other", "Content-Type": "text/plain"})
    assert client.post("/tx", content=other, headers={"Content-Type": "application/octet-stream"}).status_code == 200

    tag = [{"name": "App-Name", "values": ["gql-test"]}]
    pending = gql(client, QUERY, tags=tag, first=10)["transactions"]
    assert {edge["node"]["id"] for edge in pending["edges"]} == {tx.id for tx in txs}
    assert all(edge["node"]["block"] is None for edge in pending["edges"])

    client.post("/mine")
    page1 = gql(client, QUERY, tags=tag, first=2)["transactions"]
    assert page1["pageInfo"]["hasNextPage"] is True and len(page1["edges"]) == 2
    page2 = gql(client, QUERY, tags=tag, first=2, after=page1["edges"][-1]["cursor"])["transactions"]
    assert page2["pageInfo"]["hasNextPage"] is False
    seen = [edge["node"]["id"] for edge in page1["edges"] + page2["edges"]]
    assert sorted(seen) == sorted(tx.id for tx in txs)

    node = page1["edges"][0]["node"]
    assert node["owner"]["address"] == KEY_ADDRESS
    assert node["fee"] == {"winston": "1000", "ar": "0.000000001000"}
    assert node["quantity"]["winston"] == "0"
    assert node["block"]["height"] == 1
    assert node["block"]["id"] == client.get("/block/height/1").json()["indep_hash"]
    assert {"name": "App-Name", "value": "gql-test"} in node["tags"]
    assert node["data"]["size"] == "5" and node["bundledIn"] is None

    by_owner = gql(client, QUERY, owners=[KEY_ADDRESS], first=100)["transactions"]
    assert len(by_owner["edges"]) == 3
    ascending = gql(client, QUERY, tags=tag, sort="HEIGHT_ASC", first=100)["transactions"]["edges"]
    assert [e["node"]["id"] for e in ascending] == [tx.id for tx in txs]

    one = gql(client, "query($id: ID!) { transaction(id: $id) { id data { type } } }", id=txs[1].id)
    assert one["transaction"]["id"] == txs[1].id
    missing = gql(client, 'query { transaction(id: "%s") { id } }' % ("A" * 43))
    assert missing["transaction"] is None


def test_get_with_query_string(client, rsa_signer):
    tx = signed_tx(rsa_signer, b"x", {"Kind": "get-test"})
    client.post("/tx", json=tx.to_json())
    query = '{ transactions(tags: [{name: "Kind", values: ["get-test"]}]) { edges { node { id } } } }'
    response = client.get("/graphql", params={"query": query})
    assert response.status_code == 200
    assert response.json()["data"]["transactions"]["edges"][0]["node"]["id"] == tx.id


def test_bad_requests_are_json_errors(client):
    for body in (b"not json", b"[]", b'{"query": 5}', b'{"query": "{ nope }"}', b'{"query": "{ transactions(first: \\"x\\") { edges { cursor } } }"}'):
        response = client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]
    bad_cursor = client.post("/graphql", json={"query": '{ transactions(after: "zzz") { edges { cursor } } }'})
    assert bad_cursor.status_code in (200, 400) and bad_cursor.json()["errors"]
    assert client.get("/graphql").status_code == 400


def test_blocks_and_bundled_items(client, rsa_signer, ed_signer):
    from permastore.protocol import ans104
    from permastore.protocol.bundle import build_bundle

    items = [signed_item(ed_signer, b"one", {"In": "bundle"}), signed_item(ed_signer, b"two", {"In": "bundle"})]
    bundle_tx = signed_tx(rsa_signer, build_bundle(items), {"Bundle-Format": "binary", "Bundle-Version": "2.0.0"})
    assert client.post("/tx", json=bundle_tx.to_json()).status_code == 200
    client.post("/mine/3")
    query = 'query($b: [ID!]) { transactions(bundledIn: $b) { edges { node { id bundledIn { id } data { size } } } } }'
    edges = gql(client, query, b=[bundle_tx.id])["transactions"]["edges"]
    assert sorted(e["node"]["id"] for e in edges) == sorted(ans104.parse_header(i).id for i in items)
    assert all(e["node"]["bundledIn"]["id"] == bundle_tx.id for e in edges)

    blocks = gql(client, "{ blocks(first: 2) { pageInfo { hasNextPage } edges { cursor node { id height previous } } } }")["blocks"]
    assert [e["node"]["height"] for e in blocks["edges"]] == [3, 2] and blocks["pageInfo"]["hasNextPage"]
    assert blocks["edges"][0]["node"]["previous"] == blocks["edges"][1]["node"]["id"]
    rest = gql(client, '{ blocks(after: "%s") { edges { node { height } } } }' % blocks["edges"][-1]["cursor"])["blocks"]
    assert [e["node"]["height"] for e in rest["edges"]] == [1, 0]
    ranged = gql(client, "{ blocks(height: {min: 1, max: 2}, sort: HEIGHT_ASC) { edges { node { height } } } }")["blocks"]
    assert [e["node"]["height"] for e in ranged["edges"]] == [1, 2]
    one = gql(client, '{ block(height: 2) { id height } }')["block"]
    assert gql(client, '{ block(id: "%s") { height } }' % one["id"])["block"]["height"] == 2


def _ids(client, tags, first=100, after=None) -> tuple[list[str], bool]:
    page = gql(client, QUERY, tags=tags, first=first, after=after)["transactions"]
    return [edge["node"]["id"] for edge in page["edges"]], page["pageInfo"]["hasNextPage"]


def test_tag_filter_ops_and_wildcard_matches(client, rsa_signer, ed_signer):
    kinds = ["text/plain", "text/html", "image/png", "text/plain", "application/json"]
    items = []
    for n, kind in enumerate(kinds):
        raw = signed_item(ed_signer, f"item {n}".encode(), {"App-Name": "ops-test", "Content-Type": kind, "N": str(n)})
        response = client.post("/tx", content=raw, headers={"Content-Type": "application/octet-stream"})
        items.append(response.json()["id"])
    untagged = signed_item(ed_signer, b"no content type", {"App-Name": "ops-test"})
    client.post("/tx", content=untagged, headers={"Content-Type": "application/octet-stream"})
    app = {"name": "App-Name", "values": ["ops-test"]}
    by_kind = lambda wanted: {items[n] for n, kind in enumerate(kinds) if wanted(kind)}  # noqa: E731

    neq, _ = _ids(client, [app, {"name": "Content-Type", "values": ["text/plain"], "op": "NEQ"}])
    assert set(neq) == by_kind(lambda k: k != "text/plain")  # carries the tag, with another value
    neq_two, _ = _ids(client, [app, {"name": "Content-Type", "values": ["text/plain", "image/png"], "op": "NEQ"}])
    assert set(neq_two) == by_kind(lambda k: k not in ("text/plain", "image/png"))
    prefix, _ = _ids(client, [app, {"name": "Content-Type", "values": ["text/*"], "match": "WILDCARD"}])
    assert set(prefix) == by_kind(lambda k: k.startswith("text/"))
    inner, _ = _ids(client, [app, {"name": "Content-Type", "values": ["*/p*"], "match": "WILDCARD"}])
    assert set(inner) == by_kind(lambda k: k in ("text/plain", "image/png"))
    not_text, _ = _ids(client, [app, {"name": "Content-Type", "values": ["text/*"], "match": "WILDCARD", "op": "NEQ"}])
    assert set(not_text) == by_kind(lambda k: not k.startswith("text/"))
    literal, _ = _ids(client, [app, {"name": "Content-Type", "values": ["text/*"], "match": "EXACT"}])
    assert literal == []  # EXACT takes `*` literally
    regex_chars, _ = _ids(client, [app, {"name": "Content-Type", "values": ["text.plain"], "match": "WILDCARD"}])
    assert regex_chars == []  # only `*` is special

    # Paging over filtered rows: the store's cursors, no row twice or lost.
    seen, after, has_next = [], None, True
    while has_next:
        page = gql(client, QUERY, tags=[app, {"name": "Content-Type", "values": ["*"], "match": "WILDCARD"}], first=2, after=after)
        edges = page["transactions"]["edges"]
        seen += [edge["node"]["id"] for edge in edges]
        has_next = page["transactions"]["pageInfo"]["hasNextPage"]
        after = edges[-1]["cursor"] if edges else None
    assert sorted(seen) == sorted(items)


def test_unsupported_tag_matches_are_clear_graphql_errors(client):
    for match in ("FUZZY_AND", "FUZZY_OR"):
        response = client.post(
            "/graphql", json={"query": QUERY, "variables": {"tags": [{"name": "A", "values": ["b"], "match": match}]}}
        )
        body = response.json()
        assert response.status_code in (200, 400)
        assert f"match {match} is not supported" in body["errors"][0]["message"]
    response = client.post("/graphql", json={"query": QUERY, "variables": {"tags": [{"name": "A", "values": ["b"], "op": "LIKE"}]}})
    assert response.status_code == 400 and response.json()["errors"]
    response = client.post("/graphql", json={"query": QUERY, "variables": {"tags": [{"name": "A", "values": [], "op": "NEQ"}]}})
    assert "needs values" in response.json()["errors"][0]["message"]


# -- hostile queries against a real server (issue 7 point 4) --------------------------------------

import re as _re  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gateway.gql_filters import Glob  # noqa: E402
from tests.helpers.servers import start_server  # noqa: E402


@pytest.fixture
def server(tmp_path):
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    yield running
    running.stop()


def test_wildcard_on_a_long_tag_answers_at_once_and_the_server_stays_responsive(server, ed_signer):
    """A backtracking regex took minutes over a 3,000-byte value with `a*a*a*a*b`; a linear match is instant."""
    value = "a" * 3000
    item = signed_item(ed_signer, b"long tag", {"Note": value, "App-Name": "wild"})
    with httpx.Client(base_url=server.url, timeout=60) as client:  # the old matcher never answered within this
        item_id = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}).json()["id"]
        for pattern, hit in (("a*a*a*a*b", False), ("a*a*a*a*a", True), ("*" + "a*" * 40, True), ("a" * 2999 + "*b", False)):
            body = {"query": QUERY, "variables": {"tags": [{"name": "Note", "values": [pattern], "match": "WILDCARD"}]}}
            response = client.post("/graphql", json=body)
            assert response.status_code == 200, response.text
            ids = [edge["node"]["id"] for edge in response.json()["data"]["transactions"]["edges"]]
            assert ids == ([item_id] if hit else []), pattern
        assert client.get("/info").status_code == 200


def test_costly_queries_are_refused_with_a_clear_400(server):
    aliases = "{" + " ".join(f"a{n}: transactions {{ edges {{ cursor }} }}" for n in range(1000)) + "}"
    fragments = "fragment F0 on Transaction { id anchor }\n" + "\n".join(
        f"fragment F{n} on Transaction {{ ...F{n - 1} ...F{n - 1} }}" for n in range(1, 40)
    ) + "\n{ transactions { edges { node { ...F39 } } } }"
    deep = "{ transactions { edges { node { " + "bundledIn { id } " + "} } } }"
    nested = "{" + "a {" * 3000 + "b" + "}" * 3000 + "}"
    pages = "{" + " ".join(f"p{n}: blocks {{ edges {{ cursor }} }}" for n in range(40)) + "}"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for query, reason in ((aliases, "1000 aliases"), (fragments, "fields"), (nested, "nested too deeply"), (pages, "transactions/blocks")):
            response = client.post("/graphql", json={"query": query})
            assert response.status_code == 400, response.text[:300]
            assert reason in response.json()["error"]
        assert client.post("/graphql", json={"query": deep}).status_code == 200  # an ordinary query still runs
        wide = {"query": QUERY, "variables": {"tags": [{"name": "A", "values": ["b"]}] * 21}}
        assert "at most 20 tag filters" in client.post("/graphql", json=wide).json()["errors"][0]["message"]
        bad_cursor = client.post("/graphql", json={"query": QUERY, "variables": {"after": "WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwLDFd"}})
        assert "invalid cursor" in bad_cursor.json()["errors"][0]["message"]


def test_pages_shrink_to_the_response_budget_and_cursors_continue(client, ed_signer, monkeypatch):
    from gateway import gql_budget

    for n in range(6):
        raw = signed_item(ed_signer, f"big tags {n}".encode(), {"App-Name": "budget", "Pad": "x" * 3000})
        client.post("/tx", content=raw, headers={"Content-Type": "application/octet-stream"})
    monkeypatch.setattr(gql_budget, "RESPONSE_BUDGET_BYTES", 16_000)  # two such items per query
    seen, after, pages = [], None, 0
    while True:
        page = gql(client, QUERY, tags=[{"name": "App-Name", "values": ["budget"]}], first=100, after=after)["transactions"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["edges"][-1]["cursor"]
    assert len(seen) == len(set(seen)) == 6 and pages >= 3


def _reference_glob(pattern: bytes, value: bytes) -> bool:
    return _re.fullmatch(b".*".join(_re.escape(p) for p in pattern.split(b"*")), value, _re.DOTALL) is not None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=12).map(lambda b: bytes(c % 3 + 97 if c % 4 else 42 for c in b)), st.binary(max_size=16).map(lambda b: bytes(c % 3 + 97 for c in b)))
def test_fuzz_glob_equals_the_regex_it_replaced(pattern, value):
    assert Glob.of(pattern).matches(value) == _reference_glob(pattern, value)


tag_filter = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c", ""]) | st.text(max_size=6), "values": st.lists(st.text(alphabet="ab*/\\.%_", max_size=6), max_size=3)},
    optional={"op": st.sampled_from(["EQ", "NEQ", "LIKE"]), "match": st.sampled_from(["EXACT", "WILDCARD", "FUZZY_OR"])},
)
cursors = st.one_of(
    st.text(max_size=40),
    st.tuples(st.integers(-(2**70), 2**70), st.integers(-(2**70), 2**70)).map(lambda t: b64url.encode(json.dumps(list(t)).encode())),
    st.binary(max_size=30).map(b64url.encode),
)


@pytest.fixture(scope="module")
def tagged_node(tmp_path_factory, ed_signer):
    """One app for the fuzz test below, holding items whose tags the filters can hit."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    from .conftest import LOCAL_CLIENT, make_config

    with TestClient(create_app(make_config(tmp_path_factory.mktemp("gqlfuzz"))), raise_server_exceptions=False, client=LOCAL_CLIENT) as test_client:
        for n, value in enumerate(["a", "ab", "a*b", "b/a", "%_", "\\a", "ba" * 50]):
            raw = signed_item(ed_signer, f"fuzz {n}".encode(), {"a": value, "b": value})
            test_client.post("/tx", content=raw, headers={"Content-Type": "application/octet-stream"})
        yield test_client


@settings(max_examples=150, deadline=None)
@given(tags=st.lists(tag_filter, max_size=4), after=st.one_of(st.none(), cursors), first=st.integers(-3, 10**6))
def test_fuzz_tag_filters_and_cursors_never_fail_the_server(tagged_node, tags, after, first):
    client = tagged_node
    response = client.post("/graphql", json={"query": QUERY, "variables": {"tags": tags, "after": after, "first": first}})
    assert response.status_code in (200, 400), response.text[:300]
    body = response.json()
    assert "data" in body
    if response.status_code == 200 and "errors" not in body:
        assert len(body["data"]["transactions"]["edges"]) <= 100
