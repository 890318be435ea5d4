"""arweave-js against a node: wallet, mint, small + chunked uploads, mine, get/verify/getData, status, GraphQL."""

from __future__ import annotations

import hashlib

import httpx
import pytest

pytestmark = pytest.mark.interop


def _served_sha256(base_url: str, object_id: str) -> str:
    """Given a node and an ID, return the SHA-256 of GET /{id} fetched with httpx (a second client)."""
    response = httpx.get(f"{base_url}/{object_id}", timeout=60)
    assert response.status_code == 200, f"GET /{object_id}: {response.status_code} {response.text[:300]}"
    return hashlib.sha256(response.content).hexdigest()


def test_arweave_flow_script_holds_against_arlocal(arlocal, run_script):
    """The script's checks are right: arlocal passes them (with its listed quirks tolerated)."""
    result = run_script("arweave_flow.js", arlocal.url, "--arlocal", server=arlocal)
    assert result["chunked"]["chunks"] >= 3
    assert _served_sha256(arlocal.url, result["chunked"]["id"]) == result["chunked"]["sha256"]


def test_arweave_js_uploads_reads_and_queries_our_node(our_node, run_script):
    """Every arweave-js step passes against our node with no quirk tolerated."""
    result = run_script("arweave_flow.js", our_node.url, server=our_node)
    assert result["tolerated"] == []
    assert result["chunked"]["chunks"] >= 3
    assert result["chunked"]["size"] > 2 * 256 * 1024
    for upload in (result["small"], result["chunked"]):
        assert _served_sha256(our_node.url, upload["id"]) == upload["sha256"]
