"""Path manifest parsing and resolution (gateway.manifests): unit cases, ar-io-node's fixtures (also over HTTP), fuzz."""

import json
import re
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.manifests import PathManifestError, parse_manifest, resolve
from tests.helpers.servers import start_server

from .conftest import signed_item

A = "A" * 43
B = "B" * 42 + "A"
C = "C" * 42 + "A"
F = "F" * 42 + "A"


def manifest(version="0.1.0", **extra) -> bytes:
    doc = {
        "manifest": "arweave/paths",
        "version": version,
        "paths": {"index.html": {"id": A}, "css/site.css": {"id": B}, "docs/index.html": {"id": C}},
    }
    doc.update(extra)
    return json.dumps(doc).encode()


def test_index_by_path_and_lookup():
    m = parse_manifest(manifest(index={"path": "index.html"}))
    assert resolve(m, "") == A
    assert resolve(m, "css/site.css") == B
    assert resolve(m, "docs/") == C  # a folder resolves to its index.html
    assert resolve(m, "docs") == C
    assert resolve(m, "missing") is None


def test_v020_index_by_id_and_fallback():
    m = parse_manifest(manifest("0.2.0", index={"id": B}, fallback={"id": F}))
    assert resolve(m, "") == B
    assert resolve(m, "nowhere/at/all") == F


def test_url_encoded_paths():
    m = parse_manifest(manifest())
    assert resolve(m, "css%2Fsite.css") == B


@pytest.mark.parametrize("path", ["../index.html", "css/../../x", "%2e%2e/%2e%2e/etc/passwd", "/" + A, A])
def test_paths_cannot_escape(path):
    m = parse_manifest(manifest(index={"path": "index.html"}))
    assert resolve(m, path) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        json.dumps({"manifest": "other", "version": "0.1.0", "paths": {}}).encode(),
        json.dumps({"manifest": "arweave/paths", "version": "9.9.9", "paths": {}}).encode(),
        json.dumps({"manifest": "arweave/paths", "version": "0.1.0", "paths": {"a": {"id": "short"}}}).encode(),
        json.dumps({"manifest": "arweave/paths", "version": "0.1.0", "paths": []}).encode(),
        json.dumps({"manifest": "arweave/paths", "version": "0.1.0", "paths": {}, "index": 3}).encode(),
    ],
)
def test_invalid_manifests(raw):
    with pytest.raises(PathManifestError):
        parse_manifest(raw)


# ar-io-node's manifest fixtures and the resolutions its own tests expect (fixtures/vectors/README.md).
MANIFESTS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "ario" / "manifests"
INDEX_PAGE = "cG7Hdi_iTQPoEYgQJFqJ8NMpN4KoZ-vH_j7pG4iP7NI"
INDEX_ID = "QYWh-QsozsYu2wor0ZygI5Zoa_fRYFc8_X1RkYmw_fU"
MOBILE_CSS = "fZ4d7bkCAUiXSfo3zFsPiQvpLVKVtXUKB6kiLNt2XVQ"
ICON = "0543SMRGYuGKTaqLzmpOyK4AxAB96Fra2guHzYxjRGo"
PATHS = [("css/mobile.css", MOBILE_CSS), ("assets/img/icon.png", ICON), ("assets/img/icon.png/", ICON)]
EXPECTED = [
    ("example_manifest_v0.1.0.json", "", INDEX_PAGE),
    *[("example_manifest_v0.1.0.json", path, found) for path, found in PATHS],
    ("example_manifest_v0.1.0.json", "missing", None),
    ("example_manifest_v0.1.0_index_path_at_end.json", "", "hoI_WQI9_5Mf1vASBwLdqE01goxRCgC53yuCrSaUOcs"),
    ("example_manifest_v0.2.0_index_id.json", "", INDEX_ID),
    *[("example_manifest_v0.2.0_index_id.json", path, found) for path, found in PATHS],
    ("example_manifest_v0.2.0_index_id.json", "missing", INDEX_PAGE),
    ("example_manifest_v0.2.0_index_path.json", "", INDEX_PAGE),
    *[("example_manifest_v0.2.0_index_path.json", path, found) for path, found in PATHS],
    ("example_manifest_v0.2.0_index_path.json", "missing", INDEX_PAGE),
    ("example_manifest_v0.2.0_index_id_path.json", "", INDEX_ID),  # index.id wins over index.path
    ("example_manifest_v0.2.0_at_the_end.json", "", INDEX_ID),
    *[("example_manifest_v0.2.0_index_id_path.json", path, found) for path, found in PATHS],
    ("example_manifest_v0.2.0_index_id_path.json", "missing", INDEX_PAGE),  # fallback.id
    ("example_manifest_v0.2.0_at_the_end.json", "missing", INDEX_PAGE),
]  # fmt: skip


def test_all_ar_io_node_resolutions_of_its_fixtures():
    assert len(EXPECTED) == 23
    for name, path, expected in EXPECTED:
        assert resolve(parse_manifest((MANIFESTS / name).read_bytes()), path) == expected, (name, path)


def test_fixture_manifests_resolve_the_same_over_http(tmp_path, ed_signer):
    """The fixtures with their IDs swapped for items stored here: GET /{manifest}/{path} on a real server."""
    server = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            stored: dict[str, str] = {}

            def local_id(mainnet_id: str) -> str:
                if mainnet_id not in stored:  # one item per distinct ID; its body names the ID it stands for
                    item = signed_item(ed_signer, mainnet_id.encode(), {"Content-Type": "text/plain"})
                    response = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"})
                    stored[mainnet_id] = response.json()["id"]
                return stored[mainnet_id]

            manifests: dict[str, str] = {}
            for name in sorted({name for name, _, _ in EXPECTED}):
                text = (MANIFESTS / name).read_text()
                for mainnet_id in set(re.findall(r'"id"\s*:\s*"([A-Za-z0-9_-]{43})"', text)):
                    text = text.replace(mainnet_id, local_id(mainnet_id))
                item = signed_item(ed_signer, text.encode(), {"Content-Type": "application/x.arweave-manifest+json"})
                manifests[name] = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}).json()["id"]
            for name, path, expected in EXPECTED:
                response = client.get(f"/{manifests[name]}/{path}")
                if expected is None:
                    assert response.status_code == 404 and response.json()["error"], (name, path)
                    continue
                assert response.status_code == 200, (name, path, response.text)
                assert response.content == expected.encode(), (name, path)
                assert response.headers["x-ar-io-manifest-id"] == manifests[name]
    finally:
        server.stop()


manifest_keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
entry = st.one_of(st.builds(lambda: {"id": A}), st.builds(lambda: {"id": B}), st.integers(), st.none(), st.text(max_size=5), st.builds(lambda: {"id": "short"}))
docs = st.fixed_dictionaries(
    {"manifest": st.sampled_from(["arweave/paths", "other"]), "version": st.sampled_from(["0.1.0", "0.2.0", "1.0"])},
    optional={
        "paths": st.one_of(st.dictionaries(manifest_keys, entry, max_size=6), st.lists(st.integers(), max_size=2)),
        "index": st.one_of(st.fixed_dictionaries({}, optional={"path": manifest_keys, "id": st.sampled_from([A, C, "x"])}), st.integers()),
        "fallback": st.one_of(st.builds(lambda: {"id": F}), st.builds(lambda: {"id": 5}), st.text(max_size=3)),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(docs.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200)), manifest_keys)
def test_fuzz_manifests_parse_or_refuse_and_resolve_only_listed_ids(raw, path):
    try:
        parsed = parse_manifest(raw)
    except PathManifestError:
        return
    found = resolve(parsed, path)
    listed = set(parsed.paths.values()) | {parsed.index_id, parsed.fallback_id}
    assert found is None or found in listed  # never an ID the manifest does not name


def test_deeply_nested_manifest_is_refused_not_a_crash():
    with pytest.raises(PathManifestError):
        parse_manifest(b"[" * 20000 + b"]" * 20000)


def test_parsed_manifests_are_parsed_once_and_bounded():
    from gateway.manifests import PARSED_COST_FACTOR, ParsedManifests

    loads = []
    raw = manifest(index={"path": "index.html"})

    def load():
        loads.append(1)
        return raw

    cache = ParsedManifests(max_bytes=3 * len(raw) * PARSED_COST_FACTOR)
    for _ in range(5):
        assert resolve(cache.get("m1", load), "css/site.css") == B
    assert len(loads) == 1
    assert cache.get("bad", lambda: b"not json") is None  # invalid: remembered as not a manifest
    for n in range(10):
        cache.get(f"other{n}", lambda: raw)
    assert len(cache._entries) <= 3 and cache._bytes <= cache.max_bytes
