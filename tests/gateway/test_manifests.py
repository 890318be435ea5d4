"""Path manifest parsing and resolution (gateway.manifests)."""

import json

import pytest

from gateway.manifests import ManifestError, parse_manifest, resolve

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
    with pytest.raises(ManifestError):
        parse_manifest(raw)
