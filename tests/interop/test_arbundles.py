"""arbundles against a node: Arweave, ed25519 and Ethereum data items posted raw and in a bundle."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.interop

SIGNATURE_TYPES = {1, 2, 3}  # Arweave RSA-4096, ed25519, Ethereum


def test_arbundles_bundle_script_holds_against_arlocal(arlocal, run_script):
    """The bundle steps are right: arlocal serves each bundled item under its own ID."""
    result = run_script("arbundles_flow.js", arlocal.url, "--arlocal", server=arlocal)
    assert {item["type"] for item in result["bundle"]["items"]} == SIGNATURE_TYPES


def test_arbundles_items_and_bundles_against_our_node(our_node, run_script):
    """Raw items of each signature type round-trip, bundles unbundle, tampered items are refused."""
    result = run_script("arbundles_flow.js", our_node.url, server=our_node)
    assert result["tolerated"] == []
    assert {item["type"] for item in result["items"]} == SIGNATURE_TYPES
    assert {item["type"] for item in result["bundle"]["items"]} == SIGNATURE_TYPES
    assert result["tampered_bundle"].startswith(("refused", "accepted, bad item not served"))
