"""The worker node's link to its head: connections kept open, a connection the head closed replaced,
and leases of calls longer than their TTL kept alive by the slot's one heartbeat thread."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import pytest

from inference.herder.remote_link import HeadLink, HeadUnreachable
from tests.helpers.http_doubles import QuietJsonHandler
from tests.remote_workers.conftest import free_port, worker_named


class _Handler(QuietJsonHandler):
    """Answers with the request count on its connection; closes the connection silently after 2 answers,
    as a server whose keep-alive timeout passed does."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        served = getattr(self, "served", 0) + 1
        self.served = served
        self.server.connections.add(self.client_address)
        self.answer_json(f'{{"served": {served}, "got": {len(body)}, "path": "{self.path}"}}'.encode())
        self.close_connection = served >= 2

    do_GET = do_POST = _answer


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.connections = set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_requests_share_a_kept_open_connection_and_a_closed_one_is_replaced(server):
    link = HeadLink(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=10)
    try:
        first = link.get("/herder/info")
        second = link.post("/herder/leases/x/result", b"item bytes", params={"next_wait_s": 10})
        assert first.json()["served"] == 1 and second.json()["served"] == 2  # one connection, kept open
        assert second.json() == {"served": 2, "got": 10, "path": "/herder/leases/x/result?next_wait_s=10"}
        assert len(server.connections) == 1
        # The server closed that connection after its second answer: the next request goes on a new one.
        third = link.get("/herder/info")
        assert third.status_code == 200 and third.json()["served"] == 1
        assert len(server.connections) == 2
    finally:
        link.close()


def test_a_head_that_is_not_there_is_reported_not_raised_raw():
    link = HeadLink(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    with pytest.raises(HeadUnreachable):
        link.get("/herder/info")
    with pytest.raises(ValueError):
        HeadLink("ftp://head", timeout_s=5)


def test_calls_longer_than_the_lease_ttl_live_on_heartbeats_one_after_another(herd):
    address = herd.wallet("slow")
    herd.start_head("--workers", "0", "--allow-worker", address, "--lease-ttl", "1.5", "--verify-fraction", "0")
    herd.start_worker("slow", mode="slow")  # each call waits 4 s (> 2 TTLs) before it runs
    herd.wait_for(lambda i: worker_named(i, address) is not None, "the worker asking for calls")
    for prompt in ("first", "second"):  # the slot's heartbeat thread renews one lease, then the next
        answer = herd.complete(prompt)
        assert answer.status_code == 200, answer.text
    info = herd.info()
    worker = worker_named(info, address)
    assert worker["calls_done"] == 2 and worker["leases_expired"] == 0 and info["leases"]["expired"] == 0


class _SlowSecond(QuietJsonHandler):
    """Answers the first request on a connection at once and never answers the second (a slow head)."""

    protocol_version = "HTTP/1.1"
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        if getattr(self, "answered", False):
            threading.Event().wait(3)  # past the link's timeout
            return
        self.answered = True
        self.answer_json()


def test_a_request_that_times_out_on_a_kept_open_connection_is_not_sent_again():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowSecond)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    link = HeadLink(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=0.5)
    try:
        assert link.get("/first").status_code == 200
        with pytest.raises(HeadUnreachable):
            link.get("/second")  # on the kept-open connection: times out
        assert _SlowSecond.requests == 2  # a timeout is not a connection the head closed: asked once
    finally:
        link.close()
        server.shutdown()
        server.server_close()
