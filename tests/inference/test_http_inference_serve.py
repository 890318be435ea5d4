"""`permastore serve` flags turn fees and required keys on; workers stop with the server."""

from __future__ import annotations

import os
import subprocess
import time

import httpx

from tests.helpers.servers import serve_command, start_server


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.add(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def test_serve_flags_turn_fees_and_keys_on_and_workers_stop_with_it(tmp_path, tiny_gguf):
    server = start_server(
        tmp_path / "data", tmp_path / "serve.log",
        "--mine-interval", "0", "--fee-base", "7", "--fee-token", "3", "--require-keys", "--workers", "2",
    )
    try:
        info = httpx.get(f"{server.url}/herder/info", timeout=60).json()
        assert (info["base_fee"], info["token_fee"], info["workers"]) == (7, 3, 2)
        refused = httpx.post(f"{server.url}/v1/completions", json={"model": "A" * 43, "prompt": "x"}, timeout=60)
        assert refused.status_code == 401
        deadline = time.monotonic() + 60
        while len(_children(server.process.pid)) < 2:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)
        workers = _children(server.process.pid)
    finally:
        assert server.stop() == 0, server.log()[-2000:]
    time.sleep(0.5)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}") and
             open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == []


def test_bad_herder_flags_are_one_line_errors(tmp_path):
    done = subprocess.run(serve_command(tmp_path / "data", "--fee-base", "-1"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "invalid herder settings" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "herder.json").write_text("{not json")
    done = subprocess.run(serve_command(tmp_path / "data"), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "herder.json" in done.stderr and "Traceback" not in done.stderr
