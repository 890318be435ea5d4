"""Issue 7 point 15: completions do not grow the server process (a real `permastore serve`, tiny model).

Each completion used to leave ~350 KB behind in the server (a thread per call, each with
its own SQLite connection that the store keeps until it closes). After a warm-up, a few
hundred calls must leave the server's RSS where it was, within allocator noise.
"""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.helpers.servers import start_server

WARM_UP = 80
CALLS = 250
ALLOWED_GROWTH_MIB = 25  # the old leak: ~85 MiB over these calls


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_completions_leave_the_server_process_flat(tmp_path, tiny_gguf):
    data = tmp_path / "data"
    added = subprocess.run([sys.executable, "-m", "permastore.cli.main", "--data", str(data), "model", "add",
                            str(tiny_gguf)], capture_output=True, text=True, timeout=300, check=True)
    model_id = added.stdout.strip()
    server = start_server(data, tmp_path / "serve.log", "--mine-interval", "0")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            def call(i: int) -> None:
                reply = client.post("/v1/completions", json={"model": model_id, "prompt": f"hi {i % 7}",
                                                             "max_tokens": 4, "seed": 1})
                assert reply.status_code == 200, reply.text

            for i in range(WARM_UP):
                call(i)
            before = _rss_mib(server.process.pid)
            for i in range(CALLS):
                call(i)
            after = _rss_mib(server.process.pid)
    finally:
        server.stop()
    assert after - before < ALLOWED_GROWTH_MIB, f"server RSS {before:.1f} -> {after:.1f} MiB over {CALLS} calls"
