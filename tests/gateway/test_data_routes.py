"""GET|HEAD /{id}, /raw/{id} and path manifests, against the in-process app and a real store."""

import hashlib
import json
import os

from permastore.protocol import b64url

from .conftest import signed_item


def post_item(client, item: bytes) -> str:
    response = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_item_round_trip_with_headers(client, rsa_signer):
    data = b"hello permaweb " * 10
    object_id = post_item(client, signed_item(rsa_signer, data, {"Content-Type": "text/plain; charset=utf-8"}))
    response = client.get(f"/{object_id}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == f'"{object_id}"'
    assert "immutable" in response.headers["cache-control"]
    assert response.headers["content-length"] == str(len(data))
    # The digest is learnt on the first full read and sent from then on.
    again = client.get(f"/{object_id}")
    assert again.headers["x-ar-io-digest"] == b64url.encode(hashlib.sha256(data).digest())
    assert client.get(f"/raw/{object_id}").content == data


def test_head_range_and_conditional(client, rsa_signer):
    data = bytes(range(256)) * 4
    object_id = post_item(client, signed_item(rsa_signer, data))
    head = client.head(f"/{object_id}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["content-type"] == "application/octet-stream"

    part = client.get(f"/{object_id}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"

    suffix = client.get(f"/{object_id}", headers={"Range": "bytes=-5"})
    assert suffix.status_code == 206 and suffix.content == data[-5:]

    unsatisfiable = client.get(f"/{object_id}", headers={"Range": f"bytes={len(data)}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(data)}"
    assert unsatisfiable.headers["content-type"] == "application/json"
    assert "error" in unsatisfiable.json()

    cached = client.get(f"/{object_id}", headers={"If-None-Match": f'"{object_id}"'})
    assert cached.status_code == 304 and cached.content == b""


def test_large_object_streams_and_ranges_across_chunks(client, rsa_signer):
    data = os.urandom(3 * 256 * 1024 + 12345)
    object_id = post_item(client, signed_item(rsa_signer, data))
    assert client.get(f"/{object_id}").content == data
    start, end = 256 * 1024 - 100, 2 * 256 * 1024 + 100
    part = client.get(f"/{object_id}", headers={"Range": f"bytes={start}-{end - 1}"})
    assert part.status_code == 206 and part.content == data[start:end]


def test_bad_and_unknown_ids(client):
    assert client.get("/not-an-id").status_code == 400
    assert client.get("/not-an-id").json()["error"]
    unknown = client.get("/" + "A" * 43)
    assert unknown.status_code == 404 and unknown.json()["error"]
    assert client.head("/" + "A" * 43).status_code == 404


def manifest_doc(paths: dict[str, str], **extra) -> bytes:
    doc = {"manifest": "arweave/paths", "version": "0.2.0", "paths": {k: {"id": v} for k, v in paths.items()}}
    doc.update(extra)
    return json.dumps(doc).encode()


def test_manifest_index_paths_fallback_and_redirect(client, rsa_signer):
    index_id = post_item(client, signed_item(rsa_signer, b"<h1>index</h1>", {"Content-Type": "text/html"}))
    page_id = post_item(client, signed_item(rsa_signer, b"body{}", {"Content-Type": "text/css"}))
    missing_id = post_item(client, signed_item(rsa_signer, b"not found page", {"Content-Type": "text/html"}))
    manifest = manifest_doc(
        {"index.html": index_id, "css/site.css": page_id},
        index={"path": "index.html"},
        fallback={"id": missing_id},
    )
    manifest_id = post_item(
        client, signed_item(rsa_signer, manifest, {"Content-Type": "application/x.arweave-manifest+json"})
    )
    redirect = client.get(f"/{manifest_id}", follow_redirects=False)
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"/{manifest_id}/"

    index = client.get(f"/{manifest_id}/")
    assert index.content == b"<h1>index</h1>" and index.headers["content-type"].startswith("text/html")
    css = client.get(f"/{manifest_id}/css/site.css")
    assert css.content == b"body{}" and css.headers["content-type"].startswith("text/css")
    assert css.headers["etag"] == f'"{page_id}"'
    assert client.get(f"/{manifest_id}/no/such/page").content == b"not found page"
    # The raw route serves the manifest itself.
    assert client.get(f"/raw/{manifest_id}").content == manifest


def test_manifest_paths_cannot_escape(client, rsa_signer):
    secret_id = post_item(client, signed_item(rsa_signer, b"secret, not in the manifest"))
    index_id = post_item(client, signed_item(rsa_signer, b"index"))
    manifest = manifest_doc({"index.html": index_id}, index={"path": "index.html"})
    manifest_id = post_item(
        client, signed_item(rsa_signer, manifest, {"Content-Type": "application/x.arweave-manifest+json"})
    )
    # (Literal "../" is resolved by the client before sending, so the encoded forms are what reach us.)
    for path in (f"%2e%2e/{secret_id}", f"..%2F{secret_id}", secret_id, f"%2F{secret_id}", f"index.html%2F..%2F..%2F{secret_id}"):
        response = client.get(f"/{manifest_id}/{path}")
        assert response.content != b"secret, not in the manifest"
        assert response.status_code in (404, 400)


def test_subpath_of_plain_object_is_404(client, rsa_signer):
    object_id = post_item(client, signed_item(rsa_signer, b"plain"))
    assert client.get(f"/{object_id}/anything").status_code == 404


def test_repeat_reads_from_the_small_object_cache_match_the_full_route(client, rsa_signer):
    data = b"<p>cached</p>"
    object_id = post_item(client, signed_item(rsa_signer, data, {"Content-Type": "text/html"}))
    first = client.get(f"/{object_id}")
    assert first.headers["content-type"] == "text/html"  # exactly the tag, no charset added
    second = client.get(f"/{object_id}")
    def strip(headers):
        return {k: v for k, v in headers.items() if k not in ("date", "server")}

    assert second.content == data and strip(second.headers) == strip(first.headers)
    head = client.head(f"/{object_id}")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
    assert client.get(f"/{object_id}", headers={"Range": "bytes=3-5"}).content == data[3:6]
    assert client.get(f"/{object_id}", headers={"If-None-Match": f'"{object_id}"'}).status_code == 304
    assert client.get(f"/{object_id}?x=1").content == data


def test_cross_origin_reads_are_allowed(client, rsa_signer):
    object_id = post_item(client, signed_item(rsa_signer, b"for a browser app"))
    origin = {"Origin": "https://app.example"}
    answers = [client.get(f"/{object_id}", headers=origin) for _ in range(2)]  # full route, then cache
    def strip(headers):
        return {k: v for k, v in headers.items() if k not in ("date", "server")}

    assert strip(answers[0].headers) == strip(answers[1].headers)
    assert answers[1].headers["access-control-allow-origin"] == "*"
    assert "Content-Range" in answers[1].headers["access-control-expose-headers"]
    preflight = client.options("/graphql", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"
