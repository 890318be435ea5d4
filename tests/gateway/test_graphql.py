"""POST/GET /graphql with the ar.io schema, against the in-process app."""

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
