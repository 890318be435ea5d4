"""`serve --public-url`: the URL the node signs as its AO Scheduler-Location and names in `GET /ao`.

Real `permastore serve` subprocesses: a bad URL is refused before anything starts; a given
URL (trailing slash dropped, a path prefix kept) is what `/ao` and the Scheduler-Location
record carry; without the flag both carry the listening URL. The record is read back the way
aos and ao-scheduler-utils look it up (GraphQL: owner = the scheduler, newest first).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import start_server

PERMASTORE = Path(sys.executable).parent / "permastore"
SCHEDULER_QUERY = """
    query GetSchedulerLocation ($owner: String!) {
      transactions (
        owners: [$owner]
        tags: [
          { name: "Data-Protocol", values: ["ao"] },
          { name: "Type", values: ["Scheduler-Location"] }
        ]
        # Only need the most recent Scheduler-Location
        sort: HEIGHT_DESC
        first: 1
      ) {
        edges { node { id owner { address } tags { name value } } }
      }
    }"""


@pytest.mark.parametrize("url, reason", [
    ("ftp://node.example", "expected an http:// or https:// URL"),
    ("node.example:1984", "expected an http:// or https:// URL"),
    ("http://", "with a host"),
    ("https://node.example/?x=1", "a query or fragment is not"),
    ("https://node.example/#top", "a query or fragment is not"),
    ("http://node .example", "with a host"),
    ("http://node.example:99999", "its port is not a number"),
])
def test_a_public_url_clients_cannot_reach_is_refused(tmp_path, url, reason):
    done = subprocess.run([str(PERMASTORE), "serve", "--data", str(tmp_path / "data"), "--port", "0",
                           "--public-url", url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"invalid --public-url {url!r}" in done.stderr and reason in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "index.sqlite").exists()  # refused before the store was opened


def _units_and_location(base: str) -> tuple[dict, dict]:
    """Given a node's URL, return its GET /ao and its newest Scheduler-Location record (as aos finds it)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        units = client.get("/ao").json()
        answer = client.post("/graphql", json={"query": SCHEDULER_QUERY,
                                               "variables": {"owner": units["scheduler"]}}).json()
    [edge] = answer["data"]["transactions"]["edges"]
    return units, edge["node"]


@pytest.mark.parametrize("given, published", [
    ("https://node.example:8443/", "https://node.example:8443"),
    ("http://proxy.example/permastore", "http://proxy.example/permastore"),
])
def test_the_public_url_is_the_scheduler_location_and_names_the_units(tmp_path, given, published):
    server = start_server(tmp_path / "data", tmp_path / "serve.log", "--public-url", given)
    try:
        units, location = _units_and_location(server.url)
    finally:
        server.stop()
    assert units["mu"] == f"{published}/ao/mu" and units["cu"] == f"{published}/ao/cu"
    assert units["gateway"] == published and units["scheduler_location"] == location["id"]
    tags = {t["name"]: t["value"] for t in location["tags"]}
    assert tags["Url"] == published and int(tags["Time-To-Live"]) > 0
    assert location["owner"]["address"] == units["scheduler"]  # signed by the node wallet it names


def test_without_the_flag_the_listening_url_is_published(tmp_path):
    server = start_server(tmp_path / "data", tmp_path / "serve.log", "--host", "127.0.0.1")
    try:
        units, location = _units_and_location(server.url)
    finally:
        server.stop()
    assert units["mu"] == f"{server.url}/ao/mu"
    assert {t["name"]: t["value"] for t in location["tags"]}["Url"] == server.url
