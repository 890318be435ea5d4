"""The access log of a real `permastore serve`: one parsed line per request on stderr, none with --quiet."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import LISTENING_PREFIX, START_TIMEOUT_S, serve_command

from .conftest import signed_item

LINE = re.compile(
    r'^(?P<client>\S+) - - \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
    r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/(?P<version>1\.[01])" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)" (?P<micros>\d+)$'
)
STOPPED = re.compile(r"^permastore: stopped \((\d+) requests served\)$")


class LoggingServer:
    """A real server with stdout and stderr kept apart."""

    def __init__(self, tmp_path: Path, *extra: str):
        self.out_path, self.err_path = tmp_path / "out.log", tmp_path / "err.log"
        command = serve_command(tmp_path / "data", "--mine-interval", "0", *extra)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            text = self.out_path.read_text(errors="replace")
            if LISTENING_PREFIX in text:
                self.url = text.split(LISTENING_PREFIX, 1)[1].split()[0]
                return
            time.sleep(0.1)
        self.process.kill()
        raise AssertionError(f"server did not start: {self.err_path.read_text(errors='replace')[-2000:]}")

    def stop(self) -> list[str]:
        """Stop it with SIGTERM; return its stderr lines."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0
        return self.err_path.read_text(errors="replace").splitlines()


def access_lines(lines: list[str]) -> list[re.Match]:
    return [m for m in map(LINE.match, lines) if m]


def exercise(url: str, item: bytes) -> list[tuple[str, str, int, int]]:
    """Make requests of several kinds; return (method, target, status, body bytes) of each, in order."""
    made = []
    with httpx.Client(base_url=url, timeout=30, headers={"User-Agent": 'probe "quoted"\tagent'}) as http:
        def record(response: httpx.Response) -> httpx.Response:
            request = response.request
            made.append((request.method, request.url.raw_path.decode(), response.status_code, len(response.content)))
            return response

        record(http.get("/info"))
        posted = record(http.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}))
        item_id = posted.json()["id"]
        record(http.get(f"/{item_id}"))
        record(http.get(f"/{item_id}"))  # a cached small object: the httptools protocol answers it itself
        record(http.head(f"/{item_id}"))
        record(http.get(f"/{item_id}", headers={"Range": "bytes=2-5"}))
        record(http.get("/" + "A" * 43))  # an ID nobody stored
        record(http.get("/info?x=1", headers={"Referer": "http://example.test/page"}))
    return made


def test_each_request_is_one_line_on_stderr(tmp_path, rsa_signer):
    item = signed_item(rsa_signer, b"hello access log", {"Content-Type": "text/plain"})
    server = LoggingServer(tmp_path)
    try:
        made = exercise(server.url, item)
    finally:
        lines = server.stop()
    logged = access_lines(lines)
    assert [(m["method"], m["target"], int(m["status"]), int(m["bytes"])) for m in logged] == made
    assert [status for _, _, status, _ in made] == [200, 200, 200, 200, 200, 206, 404, 200]
    for m in logged:
        assert m["client"] == "127.0.0.1"
        assert m["agent"] == 'probe \\"quoted\\"\\x09agent'  # escaped: no request can forge a line
        assert int(m["micros"]) >= 0
    assert logged[-1]["referer"] == "http://example.test/page"
    assert logged[0]["referer"] == "-"
    # The shutdown line counts what was served, and every one of those has its line.
    stopped = [STOPPED.match(line) for line in lines if STOPPED.match(line)]
    assert len(stopped) == 1 and int(stopped[0][1]) == len(made)
    assert not access_lines(server.out_path.read_text().splitlines())  # stdout keeps only the listening line


def test_quiet_logs_no_request(tmp_path, rsa_signer):
    item = signed_item(rsa_signer, b"quiet please", {"Content-Type": "text/plain"})
    server = LoggingServer(tmp_path, "--quiet")
    try:
        made = exercise(server.url, item)
    finally:
        lines = server.stop()
    assert len(made) == 8
    assert access_lines(lines) == []
    assert any(STOPPED.match(line) for line in lines)


@pytest.mark.parametrize("raw, shown", [
    (b"/plain/path?a=1", "/plain/path?a=1"),
    (b'/a"b\\c', '/a\\"b\\\\c'),
    (b"/\x1b[31mred\n", "/\\x1B[31mred\\x0A"),
    ("/caf\u00e9".encode(), "/caf\\xC3\\xA9"),
    (b"", "-"),
])
def test_fields_are_escaped(raw, shown):
    from gateway.access_log import clean_field

    assert clean_field(raw) == shown
