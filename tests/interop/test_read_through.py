"""Read-through: a node with --upstream serves, byte for byte, IDs it never saw, and keeps them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.interop


def _expect_same_bytes(fetched: dict, uploads: list[dict], where: str) -> None:
    """Given fetch_data.js output and the uploads' size/sha256, assert every ID was served intact."""
    for upload in uploads:
        got = fetched[upload["id"]]
        assert got["status"] == 200, f"{where}: GET /{upload['id']} answered {got['status']}"
        assert (got["size"], got["sha256"]) == (upload["size"], upload["sha256"]), f"{where}: bytes of {upload['id']} differ"


def test_second_node_reads_l1_transactions_through_the_first(start_permastore, run_script):
    """Node B (upstream A) serves A's transactions, then still serves them once A is gone."""
    first = start_permastore()
    uploaded = run_script("arweave_flow.js", first.url, server=first)
    uploads = [uploaded["small"], uploaded["chunked"]]
    second = start_permastore(first.url)
    ids = [upload["id"] for upload in uploads]
    _expect_same_bytes(run_script("fetch_data.js", second.url, *ids, server=second), uploads, "through upstream")
    first.stop()
    _expect_same_bytes(run_script("fetch_data.js", second.url, *ids, server=second), uploads, "after upstream stopped")


def test_second_node_reads_data_items_through_the_first(start_permastore, run_script):
    """Node B (upstream A) serves A's raw-posted and bundled data items of every signature type."""
    first = start_permastore()
    uploaded = run_script("arbundles_flow.js", first.url, server=first)
    uploads = uploaded["items"] + uploaded["bundle"]["items"]
    second = start_permastore(first.url)
    ids = [upload["id"] for upload in uploads]
    _expect_same_bytes(run_script("fetch_data.js", second.url, *ids, server=second), uploads, "through upstream")
    first.stop()
    _expect_same_bytes(run_script("fetch_data.js", second.url, *ids, server=second), uploads, "after upstream stopped")


def test_node_reads_transactions_through_arlocal(arlocal, start_permastore, run_script):
    """A node with arlocal as upstream serves the bytes of transactions posted to arlocal with arweave-js."""
    uploaded = run_script("arweave_flow.js", arlocal.url, "--arlocal", server=arlocal)
    uploads = [uploaded["small"], uploaded["chunked"]]
    node = start_permastore(arlocal.url)
    ids = [upload["id"] for upload in uploads]
    _expect_same_bytes(run_script("fetch_data.js", node.url, *ids, server=node), uploads, "through arlocal")


def test_node_reads_bundled_items_through_arlocal(arlocal, start_permastore, run_script):
    """A node with arlocal as upstream serves data items bundled on arlocal (one of 600 KiB)."""
    uploaded = run_script("arbundles_flow.js", arlocal.url, "--arlocal", server=arlocal)
    uploads = uploaded["bundle"]["items"]
    node = start_permastore(arlocal.url)
    ids = [upload["id"] for upload in uploads]
    _expect_same_bytes(run_script("fetch_data.js", node.url, *ids, server=node), uploads, "through arlocal")
