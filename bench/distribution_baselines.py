"""The distribution bench's baselines (aria2c from nginx, the legacy single-upstream read-through)
and the helpers both files use: random files, page-cache drops, child processes with their CPU."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from files import same_bytes, write_random  # noqa: F401 - distribution_bench imports them from here
from ports import free_port
from proc_memory import evict_file, evict_folder
from timing import cpu_seconds, run_measured

from tests.helpers.keys import seed_wallet  # the bench runs with the repository on sys.path

# ---------------------------------------------------------------------------- helpers


def cold(folders: list[Path]) -> None:
    """Drop the serving nodes' segments from the page cache: every measured pull reads its peers from disk."""
    for folder in folders:
        evict_folder(folder / "segments")


# ---------------------------------------------------------------------------- baselines


NGINX_CONF = """
worker_processes 2;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def aria2c_baseline(work: Path, source: Path, links=None) -> dict:
    """aria2c -x8 -s8 of source from nginx, then sync (links: a LinkShaper to put nginx behind its link)."""
    nginx, aria2c = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("aria2c")
    if not Path(nginx).exists() or aria2c is None:
        raise SystemExit("needs nginx and aria2c (apt-get install nginx aria2)")
    conf_dir = work / "nginx"
    shutil.rmtree(conf_dir, ignore_errors=True)  # a previous round's
    conf_dir.mkdir()
    port = free_port()
    if links is not None and port not in links.ports:
        links.limit(port)
    (conf_dir / "nginx.conf").write_text(NGINX_CONF.format(dir=conf_dir, port=port, root=source.parent))
    server = subprocess.Popen([nginx, "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_port(port)
        out_dir = work / "aria2c"
        out_dir.mkdir()
        evict_file(source)
        started = time.monotonic()
        result = run_measured([aria2c, "-x8", "-s8", "-q", "--allow-overwrite=true", "--file-allocation=none",
                            "-d", str(out_dir), f"http://127.0.0.1:{port}/{source.name}"])  # fmt: skip
        subprocess.run(["sync"], check=True)
        wall = time.monotonic() - started
        if result["rc"] != 0 or not same_bytes(source, out_dir / source.name):
            raise SystemExit(f"aria2c failed (exit {result['rc']}): {result['stderr'][-500:]}{result['stdout'][-500:]}")
        shutil.rmtree(out_dir)
        served = sum(cpu_seconds(int(pid)) for pid in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split())
        return {"wall_s": round(wall, 3), "download_s": result["wall_s"], "cpu_s": result["cpu_s"],
                "nginx_cpu_s": round(served, 2)}  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def _wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nginx did not listen on {port}")


class _PieceReader:
    """read(n) over an iterator of pieces, one piece at a time (the read-through's reader before the engine)."""

    def __init__(self, pieces):
        self.pieces, self.rest = iter(pieces), b""

    def read(self, n: int = -1) -> bytes:
        while not self.rest:
            piece = next(self.pieces, None)
            if piece is None:
                return b""
            self.rest = piece
        out, self.rest = self.rest[:n], self.rest[n:]
        return out


def legacy_read_through(work: Path, jwk: dict, peer: str, object_id: str) -> dict:
    """The read-through as it was before the engine: one upstream, the whole object streamed
    (httpx, 1 MiB pieces) into put_tx, verified against data_root at the end, served only then."""
    import httpx

    from permastore.protocol.tx import Transaction
    from permastore.store import Store

    folder = seed_wallet(work / "legacy", jwk)
    cold([work / "a"])
    started = time.monotonic()
    with Store.open(folder) as store, httpx.Client(timeout=30) as client:
        tx = Transaction.from_json(client.get(f"{peer}/tx/{object_id}").json())
        with client.stream("GET", f"{peer}/raw/{object_id}", headers={"Accept-Encoding": "identity"}) as response:
            store.put_tx(tx, _PieceReader(response.iter_raw(1024 * 1024)))
        stored = time.monotonic() - started
        first = next(iter(store.read(object_id, 0, 1)))  # nothing could be served before this point
        ttfb = time.monotonic() - started
        assert first
    shutil.rmtree(folder)
    return {"wall_s": round(stored, 3), "first_byte_s": round(ttfb, 3)}
