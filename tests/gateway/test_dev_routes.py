"""arlocal's development routes (/mint, /mine): loopback clients only, off with --no-dev-routes, /mint capped."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.helpers.keys import KEY_ADDRESS
from tests.helpers.servers import start_server

DEV_ROUTES = [("GET", f"/mint/{KEY_ADDRESS}/1000"), ("POST", f"/mint/{KEY_ADDRESS}/1000"), ("GET", "/mine"),
              ("POST", "/mine"), ("GET", "/mine/2"), ("POST", "/mine/2")]


def outside_address() -> str | None:
    """Return an address of this machine that is not loopback, or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: picks the outgoing interface, sends nothing
            host = probe.getsockname()[0]
        except OSError:
            return None
    return None if host.startswith("127.") or host == "0.0.0.0" else host


def test_dev_routes_answer_loopback_only_and_mint_is_capped(tmp_path):
    host = outside_address()
    if host is None:
        pytest.skip("this machine has no address besides loopback to call from")
    server = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0", "--host", "0.0.0.0")
    port = server.url.rsplit(":", 1)[1]
    try:
        for method, path in DEV_ROUTES:
            local = httpx.request(method, f"http://127.0.0.1:{port}{path}")
            assert local.status_code == 200, (method, path, local.text)
            remote = httpx.request(method, f"http://{host}:{port}{path}")
            assert remote.status_code == 403 and "loopback" in remote.json()["error"], (method, path)
        assert httpx.get(f"http://{host}:{port}/info").status_code == 200  # everything else is for everyone
        too_much = httpx.get(f"http://127.0.0.1:{port}/mint/{KEY_ADDRESS}/{10**18 + 1}")
        assert too_much.status_code == 400 and "less than or equal to" in too_much.json()["error"]
        huge = httpx.get(f"http://127.0.0.1:{port}/mint/{KEY_ADDRESS}/{'9' * 5000}")
        assert huge.status_code == 400
    finally:
        server.stop()


def test_no_dev_routes_refuses_them_even_to_loopback(tmp_path):
    server = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0", "--no-dev-routes")
    try:
        for method, path in DEV_ROUTES:
            response = httpx.request(method, server.url + path)
            assert response.status_code == 403 and "--no-dev-routes" in response.json()["error"], (method, path)
        assert httpx.get(f"{server.url}/info").json()["height"] == 0  # nothing was mined
    finally:
        server.stop()


def test_minted_balances_stay_bounded(client):
    from gateway.routes.wallet import MAX_BALANCE

    client.app.state.node.ledger.mint(KEY_ADDRESS, MAX_BALANCE - 5)  # close to the cap already
    assert client.get(f"/mint/{KEY_ADDRESS}/5").status_code == 200
    refused = client.get(f"/mint/{KEY_ADDRESS}/1")
    assert refused.status_code == 400 and "past" in refused.json()["error"]
    assert int(client.get(f"/wallet/{KEY_ADDRESS}/balance").text) == MAX_BALANCE
