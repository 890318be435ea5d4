"""A node stops cleanly on SIGTERM and SIGINT through public signal handling only (no uvicorn
internals overridden): exit status 0, its shutdown line printed, no traceback."""

from __future__ import annotations

import signal

import httpx
import pytest

from gateway.server import AnnouncingServer
from tests.helpers.servers import start_server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_node_stops_cleanly_and_says_so(tmp_path, sig):
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    for _ in range(3):
        assert httpx.get(f"{running.url}/info", timeout=30).status_code == 200
    assert running.stop(sig) == 0  # not killed by the signal uvicorn raises again after shutting down
    log = running.log()
    assert "permastore: stopped (" in log and "requests served)" in log
    assert "Traceback" not in log


def test_no_uvicorn_internal_is_overridden():
    # capture_signals is not part of uvicorn's public API; the node's handlers go through `signal`.
    assert "capture_signals" not in vars(AnnouncingServer)
