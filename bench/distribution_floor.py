"""The floor of a verified 3-peer pull on this machine: the work any implementation must do, with
nothing but the C primitives that do it.

    python bench/distribution_floor.py SOURCE DEST            # prints one JSON line
    python bench/distribution_floor.py --io-only SOURCE DEST  # the disk alone

Three server processes each read their share of SOURCE (8 MiB pieces, out of the page cache),
BLAKE3 every 256 KiB chunk (a node verifies what it serves) and send it over loopback. One
client with a thread per server receives each piece into a buffer, SHA-256s every chunk (its
proof against data_root), BLAKE3s it (the store's address), writes it in place with early
writeback, and fsyncs DEST at the end. No HTTP, no index, no proof paths, no scheduling, no
start-up: the distribution bench runs this in the same rounds as the pull and the legacy
read-through, so "legacy / floor" says how far any pull could be faster than legacy here.

``--io-only`` is the disk's share alone: three threads copy SOURCE (out of the page cache) to
DEST in 8 MiB pieces with the same early writeback and final fsync; no hashing, no sockets.
The peers' segments and the puller's store are on the one disk of this machine, so no pull
here can take less than that.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import blake3
from proc_memory import evict_file

CHUNK = 256 * 1024
PIECE = 8 * 1024 * 1024
SERVERS = 3
_ASK = struct.Struct("<QQ")  # offset, length


def serve(source: str) -> None:
    """Answer one connection's piece requests with verified bytes of source (the server side)."""
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    fd = os.open(source, os.O_RDONLY)
    view = memoryview(bytearray(PIECE))
    while len(asked := conn.recv(_ASK.size, socket.MSG_WAITALL)) == _ASK.size:
        offset, length = _ASK.unpack(asked)
        got = os.preadv(fd, [view[:length]], offset)
        for at in range(0, got, CHUNK):
            blake3.blake3(view[at : at + CHUNK]).digest()
        conn.sendall(view[:got])


def fetch(port: int, pieces: list[tuple[int, int]], out: int) -> None:
    """Given a server's port and its pieces, receive, hash twice and write each one (the client side)."""
    view = memoryview(bytearray(PIECE))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for offset, length in pieces:
            conn.sendall(_ASK.pack(offset, length))
            got = 0
            while got < length:
                count = conn.recv_into(view[got:length])
                if not count:
                    raise SystemExit("a server closed its connection early")
                got += count
            for at in range(0, length, CHUNK):
                hashlib.sha256(view[at : at + CHUNK]).digest()
                blake3.blake3(view[at : at + CHUNK]).digest()
            _write(out, view[:length], offset)


def copy(source_fd: int, pieces: list[tuple[int, int]], out: int) -> None:
    """Given pieces of a file, copy them to out with early writeback (the disk's share alone)."""
    view = memoryview(bytearray(PIECE))
    for offset, length in pieces:
        got = os.preadv(source_fd, [view[:length]], offset)
        _write(out, view[:got], offset)


def _write(out: int, piece: memoryview, offset: int) -> None:
    """Write a piece in place and start its writeback, as the store does."""
    os.pwrite(out, piece, offset)
    os.posix_fadvise(out, offset, len(piece), os.POSIX_FADV_DONTNEED)


def run_threads(target, shares: list, out: int) -> None:
    """Run target(*share, out) on a thread per share, then fsync and close out."""
    threads = [threading.Thread(target=target, args=share + (out,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.fsync(out)
    os.close(out)


def pieces_of(size: int) -> list[tuple[int, int]]:
    return [(at, min(PIECE, size - at)) for at in range(0, size, PIECE)]


def io_only(source: str, dest: str) -> dict:
    pieces = pieces_of(os.path.getsize(source))
    evict_file(Path(source), sync=True)
    source_fd = os.open(source, os.O_RDONLY)
    began, cpu = time.monotonic(), time.process_time()
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    run_threads(copy, [(source_fd, pieces[n::SERVERS]) for n in range(SERVERS)], out)
    os.close(source_fd)
    return {"wall_s": round(time.monotonic() - began, 3), "cpu_s": round(time.process_time() - cpu, 2)}


def main(source: str, dest: str) -> dict:
    pieces = pieces_of(os.path.getsize(source))
    servers = [subprocess.Popen([sys.executable, __file__, "--serve", source], stdout=subprocess.PIPE) for _ in range(SERVERS)]
    ports = [int(server.stdout.readline()) for server in servers]
    evict_file(Path(source), sync=True)  # every server reads from disk, as the peers do
    began, cpu = time.monotonic(), time.process_time()
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    run_threads(fetch, [(port, pieces[n::SERVERS]) for n, port in enumerate(ports)], out)
    wall = time.monotonic() - began
    served = 0.0
    for server in servers:
        _, _, usage = os.wait4(server.pid, 0)
        served += usage.ru_utime + usage.ru_stime
    return {"wall_s": round(wall, 3), "cpu_s": round(time.process_time() - cpu, 2), "server_cpu_s": round(served, 2)}


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif sys.argv[1] == "--io-only":
        print(json.dumps(io_only(sys.argv[2], sys.argv[3])))
    else:
        print(json.dumps(main(sys.argv[1], sys.argv[2])))
