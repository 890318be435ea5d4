"""Fixtures for the interop tests: real permastore nodes and arlocal on 127.0.0.1, node scripts.

Everything here is real: `permastore serve` from this venv, arlocal through its JS API,
and the npm clients installed in tests/interop/node_modules (scripts/test installs them).
A missing node binary or npm package fails the tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

INTEROP_DIR = Path(__file__).resolve().parent
NODE_MODULES = INTEROP_DIR / "node_modules"
NPM_PACKAGES = ("arweave", "arbundles", "arlocal")
PERMASTORE = Path(sys.executable).parent / "permastore"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
SCRIPT_TIMEOUT_S = 300
LISTENING_PREFIX = "listening on "


@dataclass
class InteropServer:
    """A started server process: its base URL, the process, and its log file."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it will not stop); safe to call twice."""
        _stop(self.process)

    def log_tail(self, chars: int = 3000) -> str:
        """Given nothing, return the end of the server's log (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _require_node_toolchain() -> str:
    """Return the node binary path, or fail the test saying what to install."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the interop tests need Node.js (scripts/test installs the npm clients)")
    missing = [name for name in NPM_PACKAGES if not (NODE_MODULES / name / "package.json").is_file()]
    if missing:
        pytest.fail(
            f"npm packages missing in {NODE_MODULES}: {', '.join(missing)}; "
            "run `npm ci` in tests/interop (scripts/test does)"
        )
    return node


def _wait_for_url(process: subprocess.Popen, log_path: Path, parse) -> str:
    """Given a starting process, its log and a line parser, return the URL it announces."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            url = parse(line)
            if url:
                return url
        if process.poll() is not None:
            break
        time.sleep(0.1)
    _stop(process)
    tail = log_path.read_text(errors="replace")[-3000:]
    pytest.fail(f"server did not announce its URL (exit code {process.poll()}); log:\n{tail}")


def _wait_for_info(server: InteropServer) -> None:
    """Given a started server, return once GET /info answers 200, or fail with its log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            if httpx.get(f"{server.url}/info", timeout=5).status_code == 200:
                return
            last_error = "GET /info was not 200"
        except httpx.HTTPError as exc:
            last_error = repr(exc)
        time.sleep(0.2)
    _stop(server.process)
    pytest.fail(f"{server.url}/info never answered 200 ({last_error}); log:\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """Given a process we started, SIGTERM it, wait, and SIGKILL it only if it will not stop."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _permastore_url(line: str) -> str | None:
    """Given a log line, return the URL of `permastore serve`'s 'listening on URL' line."""
    if LISTENING_PREFIX in line:
        return line.split(LISTENING_PREFIX, 1)[1].strip()
    return None


def _arlocal_url(line: str) -> str | None:
    """Given a log line, return the URL in start_arlocal.js's JSON line."""
    if line.startswith("{"):
        try:
            return json.loads(line).get("url")
        except ValueError:
            return None
    return None


def _start_permastore(tmp_path: Path, upstreams: list[str]) -> InteropServer:
    """Given a temporary folder and upstream URLs, start `permastore serve` on 127.0.0.1 and return it."""
    if not PERMASTORE.is_file():
        pytest.fail(f"{PERMASTORE} is missing: install this repo into the venv (pip install -e .)")
    data = tmp_path / "data"
    log_path = tmp_path / "permastore.log"
    # Port 0: the OS picks a free port and the server prints it, so parallel runs cannot collide.
    # Mine interval 0: blocks only on GET /mine, so "pending before mining" is deterministic.
    command = [str(PERMASTORE), "serve", "--data", str(data), "--host", "127.0.0.1", "--port", "0",
               "--mine-interval", "0"]
    for url in upstreams:
        command += ["--upstream", url]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = InteropServer(_wait_for_url(process, log_path, _permastore_url), process, log_path)
    _wait_for_info(server)
    return server


@pytest.fixture(scope="session")
def node_toolchain() -> str:
    """The node binary, after checking the npm clients are installed (fails, never skips)."""
    return _require_node_toolchain()


@pytest.fixture(scope="session")
def run_script(node_toolchain):
    """A function: given a script name and arguments, run it with node and return its JSON output."""

    def run(script: str, *args: str, server: InteropServer | None = None) -> dict:
        result = subprocess.run(
            [node_toolchain, str(INTEROP_DIR / script), *args],
            cwd=INTEROP_DIR, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,
        )
        if result.returncode != 0:
            server_log = f"\n--- server log ---\n{server.log_tail()}" if server else ""
            pytest.fail(f"{script} {' '.join(args)} failed (exit {result.returncode}):\n"
                        f"{result.stderr.strip()[-4000:]}{server_log}", pytrace=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert lines, f"{script} printed no JSON result; stdout:\n{result.stdout[-2000:]}"
        return json.loads(lines[-1])

    return run


@pytest.fixture(scope="session")
def start_permastore(tmp_path_factory):
    """A function: given upstream URLs, start a fresh `permastore serve` node; all stopped at session end."""
    started: list[InteropServer] = []

    def start(*upstreams: str) -> InteropServer:
        server = _start_permastore(tmp_path_factory.mktemp("permastore"), list(upstreams))
        started.append(server)
        return server

    yield start
    for server in started:
        _stop(server.process)


@pytest.fixture(scope="session")
def our_node(start_permastore) -> InteropServer:
    """One permastore node shared by the session's client flows (each flow tags its own run id)."""
    return start_permastore()


@pytest.fixture(scope="session")
def arlocal(node_toolchain, tmp_path_factory) -> InteropServer:
    """arlocal started through its JS API on 127.0.0.1 (start_arlocal.js), stopped at session end."""
    log_path = tmp_path_factory.mktemp("arlocal") / "arlocal.log"
    with log_path.open("wb") as log:
        # stdin is a pipe we hold: if pytest dies, arlocal sees EOF and stops too.
        process = subprocess.Popen(
            [node_toolchain, str(INTEROP_DIR / "start_arlocal.js"), "--stdin-lifetime"],
            cwd=INTEROP_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
        )
    server = InteropServer(_wait_for_url(process, log_path, _arlocal_url), process, log_path)
    _wait_for_info(server)
    yield server
    _stop(server.process)
    if process.stdin:
        process.stdin.close()
