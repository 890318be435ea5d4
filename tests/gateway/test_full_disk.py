"""A real full disk: `permastore serve` on a small tmpfs of its own, filled by uploads over HTTP.

The filesystem is a tmpfs mounted in a private mount namespace (`unshare --user --map-root-user
--mount`): it exists only for the server process, needs no root on the host, and vanishes
with the process. Writes past its size fail with ENOSPC from the real write calls (segment
files, SQLite's WAL, the upload spool).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import httpx
import pytest

from tests.helpers.servers import LISTENING_PREFIX, RunningServer, serve_command

from .conftest import header_only, signed_item, signed_tx

FILESYSTEM_BYTES = 12 * 1024 * 1024
ITEM = {"Content-Type": "application/octet-stream"}


def private_tmpfs_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && true"],
        capture_output=True,
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not private_tmpfs_works(), reason="this machine allows no private mount namespace (unshare --user --mount)"
)


def start_on_small_filesystem(tmp_path) -> RunningServer:
    """Start a node whose data folder is a fresh FILESYSTEM_BYTES tmpfs."""
    data = tmp_path / "data"
    data.mkdir()
    log_path = tmp_path / "server.log"
    mount = f'mount -t tmpfs -o size={FILESYSTEM_BYTES} tmpfs "$0" && exec "$@"'
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, str(data),
               *serve_command(data, "--mine-interval", "0")]
    process = subprocess.Popen(command, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if LISTENING_PREFIX in line:
                return RunningServer(line.split(LISTENING_PREFIX, 1)[1].strip(), process, log_path)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server did not start; log:\n{log_path.read_text(errors='replace')[-3000:]}")


def test_a_full_disk_refuses_writes_with_507_and_everything_stored_stays_readable(tmp_path, ed_signer, rsa_signer):
    server = start_on_small_filesystem(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            kept = {}
            for size in (3000, 100_000, 1_500_000):  # small (cacheable), medium, several chunks
                data = os.urandom(size)
                response = client.post("/tx", content=signed_item(ed_signer, data, {"Content-Type": "text/plain"}), headers=ITEM)
                assert response.status_code == 200, response.text
                kept[response.json()["id"]] = data
            # Fill the disk: uploads until the node says it is full.
            refusal = None
            for _ in range(40):
                response = client.post("/tx", content=signed_item(ed_signer, os.urandom(700_000)), headers=ITEM)
                if response.status_code != 200:
                    refusal = response
                    break
            assert refusal is not None, "the disk never filled"
            assert refusal.status_code == 507, refusal.text
            assert "disk is full" in refusal.json()["error"] and refusal.json()["status"] == 507
            # Another kind of write: a signed L1 tx with inline data.
            tx = signed_tx(rsa_signer, os.urandom(900_000))
            response = client.post("/tx", json=tx.to_json())
            assert response.status_code == 507, response.text
            assert client.post("/tx", json=header_only(signed_tx(rsa_signer, os.urandom(5000)))).status_code in (200, 507)
            # Every stored object reads back whole, the first full read included (it would write a digest row).
            for object_id, data in kept.items():
                response = client.get(f"/{object_id}")
                assert response.status_code == 200, response.text[:300]
                assert response.content == data
                assert client.get(f"/{object_id}").content == data  # and again (cache or store)
                part = client.get(f"/{object_id}", headers={"Range": "bytes=10-19,100-109"})
                assert part.status_code == 206 and data[10:20] in part.content and data[100:110] in part.content
                assert client.head(f"/raw/{object_id}").status_code == 200
            query = "query($ids: [ID!]) { transactions(ids: $ids) { edges { node { id } } } }"
            answer = client.post("/graphql", json={"query": query, "variables": {"ids": list(kept)}}).json()
            assert {edge["node"]["id"] for edge in answer["data"]["transactions"]["edges"]} == set(kept)
            assert client.get("/info").status_code == 200
        assert "Traceback" not in server.log()
    finally:
        server.stop()
