"""A worker's last heartbeat (carrying streamed text) is answered before its Result is sent: the
Result ends the call's stream on the head, so text relayed by a beat still in flight would come
after "done" and a streaming client would lose it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from inference.herder.remote_link import HeadAnswer, HeadLink
from inference.herder.remote_worker import Heartbeat

SYNC_S = 30  # how long the test waits for its own threads to get somewhere (never reached when all is well)
HOLD_S = 3  # the head double holds a beat's answer this long at most, unless the Result arrives first


class _SlowBeatHead(BaseHTTPRequestHandler):
    """A head whose answer to a heartbeat takes a while (it is relaying the beat's text): it logs
    when a beat arrives, when it is answered, and when a Result arrives. A beat's answer waits
    for a Result to arrive (HOLD_S at most), so a Result sent while a beat is in flight shows."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        head = self.server
        if self.path.endswith("/heartbeat"):
            with head.lock:
                head.log.append(("beat", tuple(json.loads(body)["events"])))
            head.beat_arrived.set()
            head.result_arrived.wait(HOLD_S)
            with head.lock:
                head.log.append(("beat answered", ()))
        else:
            with head.lock:
                head.log.append(("result", ()))
            head.result_arrived.set()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


class _LinkedNode:
    """What the Heartbeat uses of a WorkerNode: post_signed over a real HeadLink (JSON, unsigned:
    the head double checks no signature)."""

    def __init__(self, url: str):
        self.link = HeadLink(url, timeout_s=SYNC_S)

    def post_signed(self, path: str, body: dict) -> HeadAnswer:
        return self.link.post(path, json.dumps(body).encode())


def test_the_last_beat_is_answered_before_the_result_is_sent():
    head = ThreadingHTTPServer(("127.0.0.1", 0), _SlowBeatHead)
    head.daemon_threads = True
    head.lock, head.log = threading.Lock(), []
    head.beat_arrived, head.result_arrived = threading.Event(), threading.Event()
    threading.Thread(target=head.serve_forever, daemon=True).start()
    node = _LinkedNode(f"http://127.0.0.1:{head.server_address[1]}")
    heartbeat = Heartbeat(node)
    try:
        # As WorkerNode.work runs a call: streamed text goes out on a beat while the lease is
        # watched; the Result is posted once the watching block has ended.
        with heartbeat.watching("lease-1", ttl_s=30) as watch:
            watch.on_text("streamed ")
            assert head.beat_arrived.wait(SYNC_S), "no heartbeat carried the streamed text"
        node.link.post("/herder/leases/lease-1/result", b"signed result item")
        with head.lock:
            log = list(head.log)
        assert log == [("beat", ("streamed ",)), ("beat answered", ()), ("result", ())], log
    finally:
        heartbeat.stop()
        node.link.close()
        head.shutdown()
        head.server_close()
