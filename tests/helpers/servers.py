"""Real `permastore serve` processes on free 127.0.0.1 ports, for integration tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 60
LISTENING_PREFIX = "listening on "


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send sig and wait; return the exit code (kills it if it does not stop)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"server ignored signal {sig}; log:\n{self.log()[-2000:]}")
        return self.process.returncode


def serve_command(data_dir: Path, *extra: str) -> list[str]:
    """Return the `permastore serve` command line (through the gateway module when the core CLI is absent)."""
    permastore = Path(sys.executable).parent / "permastore"
    args = ["serve", "--data", str(data_dir), "--port", "0", *extra]
    probe = subprocess.run([str(permastore), "--help"], capture_output=True, text=True)
    if permastore.exists() and probe.returncode == 0:
        return [str(permastore), *args]
    return [sys.executable, "-m", "gateway", *args]


def start_server(data_dir: Path, log_path: Path, *extra: str) -> RunningServer:
    """Start a node, wait for its URL and /healthcheck, return it."""
    log = open(log_path, "wb")
    process = subprocess.Popen(serve_command(data_dir, *extra), stdout=log, stderr=subprocess.STDOUT)
    return wait_until_serving(process, log_path)


def wait_until_serving(process: subprocess.Popen, log_path: Path) -> RunningServer:
    """Given a started `serve` process and its log, wait for its URL and /healthcheck; return it
    (or kill it and fail with the log's tail)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if LISTENING_PREFIX in line:
                server = RunningServer(line.split(LISTENING_PREFIX, 1)[1].strip(), process, log_path)
                assert httpx.get(f"{server.url}/healthcheck", timeout=10).status_code == 200
                return server
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"server did not start; log:\n{log_path.read_text(errors='replace')[-3000:]}")
