"""Fixtures for remote workers: a real head (`permastore serve`) and real worker nodes (`permastore worker`)
on 127.0.0.1, each with its own data folder and wallet, the tiny fixture model stored on the head only."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import RunningServer, serve_command

REPO = Path(__file__).resolve().parents[2]
TINY_GGUF = REPO / "fixtures" / "tiny-llama.gguf"
PERMASTORE = Path(sys.executable).parent / "permastore"
START_TIMEOUT_S = 90
ALTERED_WORKER = "tests.remote_workers.altered_worker"  # workers changed in a test-only way


def cli(*args: str) -> str:
    """Run a permastore command; return its last line of output."""
    done = subprocess.run([str(PERMASTORE), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_head(data: Path, log_path: Path, *flags: str) -> RunningServer:
    """Start `permastore serve` on a free port; return it once /herder/info answers.

    Readiness is asked of the server, not read from its "listening on" line: llama.cpp
    points the process's stdout at /dev/null while it loads a vocabulary, which can swallow
    that line (see the report of this branch).
    """
    port = free_port()
    command = serve_command(data, "--mine-interval", "0", *flags)
    command[command.index("--port") + 1] = str(port)
    process = subprocess.Popen(command, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{server.url}/herder/info", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"head did not start; log:\n{server.log()[-3000:]}")


class WorkerProcess:
    """A running `permastore worker` node."""

    def __init__(self, data: Path, head_url: str, log_path: Path, mode: str | None = None):
        self.data = data
        self.address = cli("init", "--data", str(data))
        self.log_path = log_path
        command = [sys.executable, "-m", ALTERED_WORKER, mode] if mode else [str(PERMASTORE)]
        command += ["worker", "--head", head_url, "--data", str(data)]
        self.process = subprocess.Popen(command, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, cwd=REPO)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Herd:
    """A head and its worker nodes under one tmp folder; everything started is stopped at the end."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.head: RunningServer | None = None
        self.workers: list[WorkerProcess] = []
        self.model_id = ""

    def wallet(self, name: str) -> str:
        """Create a worker's data folder and wallet before its head starts; return its address."""
        return cli("init", "--data", str(self.tmp / name))

    def start_head(self, *flags: str) -> RunningServer:
        data = self.tmp / "head"
        self.model_id = cli("model", "add", str(TINY_GGUF), "--data", str(data))
        self.head = start_head(data, self.tmp / "head.log", *flags)
        return self.head

    def start_worker(self, name: str, mode: str | None = None) -> WorkerProcess:
        """Start a worker node (`mode`: an altered one, see altered_worker)."""
        assert self.head is not None
        worker = WorkerProcess(self.tmp / name, self.head.url, self.tmp / f"{name}.log", mode)
        self.workers.append(worker)
        return worker

    def info(self) -> dict:
        return httpx.get(f"{self.head.url}/herder/info", timeout=30).json()

    def wait_for(self, predicate, what: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.info()
            if predicate(info):
                return info
            time.sleep(0.1)
        logs = "\n".join(f"--- {w.log_path.name}\n{w.log()[-1500:]}" for w in self.workers)
        raise AssertionError(f"timed out waiting for {what}: {self.info()}\n{logs}\n--- head\n{self.head.log()[-3000:]}")

    def complete(self, prompt: str = "hello", max_tokens: int = 8, **extra) -> httpx.Response:
        body = {"model": self.model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.9, **extra}
        return httpx.post(f"{self.head.url}/v1/completions", json=body, timeout=180)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.head is not None:
            self.head.stop()


@pytest.fixture
def herd(tmp_path):
    started = Herd(tmp_path)
    yield started
    started.stop()


def worker_named(info: dict, address: str) -> dict | None:
    return next((w for w in info["remote_workers"] if w["address"] == address), None)
