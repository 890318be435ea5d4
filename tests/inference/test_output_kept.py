"""Loading a vocabulary (the server does, on a thread, as it starts) never swallows what other
threads print: llama-cpp-python's quiet load points fds 1 and 2 at /dev/null for its duration,
so the node's "listening on" line could be lost. Real llama.cpp, a real `permastore serve`."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.servers import start_server

PRINTER = r"""
import sys, threading
from inference import llama_adapter

path, lines = sys.argv[1], int(sys.argv[2])
done = threading.Event()

def load_again_and_again():
    while not done.is_set():
        llama_adapter.load_vocabulary(path).close()

loader = threading.Thread(target=load_again_and_again)
loader.start()
for i in range(lines):
    print(f"out {i}", flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
done.set()
loader.join()
"""


def test_lines_printed_while_a_vocabulary_loads_are_kept(tiny_gguf):
    lines = 3000
    done = subprocess.run([sys.executable, "-c", PRINTER, str(tiny_gguf), str(lines)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"out {i}" for i in range(lines)]
    assert [line for line in done.stderr.splitlines() if line.startswith("err ")] == [f"err {i}" for i in range(lines)]


def test_serve_with_a_preloaded_model_prints_its_url(tmp_path, tiny_gguf):
    added = subprocess.run([sys.executable, "-m", "permastore.cli.main", "--data", str(tmp_path / "data"),
                            "model", "add", str(tiny_gguf)], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    # start_server waits for the "listening on" line (and /healthcheck); a lost line fails it.
    running = start_server(tmp_path / "data", tmp_path / "serve.log", "--mine-interval", "0", "--workers", "1")
    assert running.stop() == 0
    log = running.log()
    assert log.count("permastore gateway listening on ") == 1 and "permastore: stopped (" in log
