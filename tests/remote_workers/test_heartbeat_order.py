"""A worker's last heartbeat (carrying streamed text) is answered before its Result is sent: the
Result ends the call's stream on the head, so text relayed by a beat still in flight would come
after "done" and a streaming client would lose it."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from types import SimpleNamespace

from inference.generation import Generation
from inference.herder import remote_worker
from inference.herder.remote_worker import Heartbeat, WorkerNode
from inference.processes import PreparedCall
from permastore.protocol import ans104
from tests.helpers.http_doubles import QuietJsonHandler

SYNC_S = 30  # how long the test waits for its own threads to get somewhere (never reached when all is well)
HOLD_S = 3  # the head double holds a beat's answer this long at most, unless the Result arrives first


class _SlowBeatHead(QuietJsonHandler):
    """A head whose answer to a heartbeat (a signed item of JSON) takes a while, as one relaying
    the beat's text does: it logs when a beat arrives, when it is answered, and when a Result
    arrives. A beat's answer waits for a Result (HOLD_S at most), so a Result sent while a beat
    is in flight shows in the log."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        head = self.server
        if self.path.endswith("/heartbeat"):
            with head.lock:
                head.log.append(("beat", tuple(json.loads(ans104.parse_item(body)[1])["events"])))
            head.beat_arrived.set()
            head.result_arrived.wait(HOLD_S)
            with head.lock:
                head.log.append(("beat answered", ()))
        else:
            with head.lock:
                head.log.append(("result", ()))
            head.result_arrived.set()
        self.answer_json()


def _node(head_url: str, signer) -> WorkerNode:
    """A WorkerNode over a real HeadLink whose inference context is a small double: the call it
    runs is given, its weights check passes, and its Result record is signed as bytes."""
    checked = SimpleNamespace(verified=SimpleNamespace(result=lambda: None))
    inference = SimpleNamespace(
        store=SimpleNamespace(signer=signer), engines=None,
        processes=SimpleNamespace(get=lambda process_id: checked),
        records=SimpleNamespace(sign=lambda record: SimpleNamespace(item=json.dumps({"text": record.text}).encode())),
    )  # fmt: skip
    node = WorkerNode(inference, head_url)
    node.head_address = "A" * 43  # a 32-byte address, as GET /herder/info gives it
    node.prepare = lambda leased: PreparedCall("process", "message", 1, "model", "/model.gguf", {}, "prompt",
                                               False, {"seed": 7})  # fmt: skip
    return node


def test_the_last_beat_is_answered_before_the_result_is_sent(monkeypatch, ed_signer):
    head = ThreadingHTTPServer(("127.0.0.1", 0), _SlowBeatHead)
    head.daemon_threads = True
    head.lock, head.log = threading.Lock(), []
    head.beat_arrived, head.result_arrived = threading.Event(), threading.Event()
    threading.Thread(target=head.serve_forever, daemon=True).start()

    def streaming_run(call, engines, on_text):
        """The call streams text, and ends while the beat carrying it is still being answered."""
        on_text("streamed ")
        assert head.beat_arrived.wait(SYNC_S), "no heartbeat carried the streamed text"
        return Generation("streamed text", (1, 2), 1, "prompt-hash", "stop", {})

    monkeypatch.setattr(remote_worker, "run_call", streaming_run)
    node = _node(f"http://127.0.0.1:{head.server_address[1]}", ed_signer)
    heartbeat = Heartbeat(node)
    try:
        assert node.work({"lease": "lease-1", "ttl_s": 30, "call": {}}, heartbeat) is None  # no next lease
        with head.lock:
            log = list(head.log)
        assert log == [("beat", ("streamed ",)), ("beat answered", ()), ("result", ())], log
        assert node.calls == 1
    finally:
        heartbeat.stop()
        node.link.close()
        head.shutdown()
        head.server_close()
