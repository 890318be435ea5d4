"""Crash safety: a writer process is SIGKILLed at random points, again and again.

After every kill the store must reopen cleanly and give back every acknowledged ID
byte for byte; at the end fsck must pass and no uncommitted segment may be left.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from permastore.store import Store

WRITER = Path(__file__).with_name("crash_writer.py")
TRIALS = 50
MAX_RUN_SECONDS = 0.5


def start_writer(data_dir: Path, seed: int) -> subprocess.Popen:
    """Start a writer process and wait until its store is open."""
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(data_dir), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=WRITER.parents[2],
    )
    first = writer.stdout.readline()
    if first != b"ready\n":
        writer.kill()
        pytest.fail(f"writer did not start: {first!r} {writer.stderr.read().decode()[-2000:]}")
    return writer


def kill_and_collect(writer: subprocess.Popen, already: bytes = b"") -> list[tuple[str, str, int]]:
    """SIGKILL a writer; return the puts it acknowledged (``already``: lines read before the kill)."""
    writer.send_signal(signal.SIGKILL)
    out, err = writer.communicate()
    assert writer.returncode == -signal.SIGKILL, err.decode()[-2000:]
    acked = []
    for line in (already + out).split(b"\n")[:-1]:  # a line without its newline was never acknowledged
        id, digest, size = line.decode().split()
        acked.append((id, digest, int(size)))
    return acked


def run_trial(data_dir: Path, seed: int, rng: random.Random, wait_for_ack: bool) -> list[tuple[str, str, int]]:
    """Start a writer, kill it with SIGKILL after a random time; return the puts it acknowledged.

    wait_for_ack: let it acknowledge one put first, so a loaded machine still yields acks to check.
    """
    writer = start_writer(data_dir, seed)
    first = writer.stdout.readline() if wait_for_ack else b""
    time.sleep(rng.uniform(0, MAX_RUN_SECONDS))
    return kill_and_collect(writer, first)


def check_acknowledged(store: Store, acked) -> None:
    for id, digest, size in acked:
        info = store.info(id)
        assert info is not None, f"acknowledged {id} lost"
        assert info.data_size == size
        assert hashlib.sha256(b"".join(store.read(id))).hexdigest() == digest, f"{id} bytes differ"


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing_acknowledged(data_dir):
    rng = random.Random(20261125)
    all_acked = []
    started = time.monotonic()
    for trial in range(TRIALS):
        acked = run_trial(data_dir, seed=trial, rng=rng, wait_for_ack=trial % 5 == 0)
        all_acked += acked
        # Reopening cleans up after the dead writer; what it acknowledged must all be there.
        with Store.open(data_dir) as store:
            check_acknowledged(store, acked)
    elapsed = time.monotonic() - started
    assert len(all_acked) >= TRIALS // 5, "writers acknowledged too little for the test to mean anything"
    with Store.open(data_dir) as store:
        check_acknowledged(store, all_acked)
        report = store.fsck()
        assert report.ok, report.failures
        committed = {row[0] for row in store.db.execute("SELECT name FROM segments")}
        inline_acked = store.db.execute(
            "SELECT COUNT(*) FROM objects o JOIN object_chunks c ON c.seq = o.seq JOIN chunks k ON k.hash = c.hash"
            f" WHERE k.segment_id = 0 AND o.id IN ({','.join('?' * len(all_acked))})",
            [id for id, _, _ in all_acked],
        ).fetchone()[0]
    assert inline_acked, "no acknowledged put took the inline (one fsync) path"
    leftovers = {p.name for p in (data_dir / "segments").glob("obj-*.seg")} - committed
    assert not leftovers, f"uncommitted segments survived reopen: {leftovers}"
    print(f"{TRIALS} kills, {len(all_acked)} acknowledged puts verified in {elapsed:.1f}s")


@pytest.mark.slow
def test_two_writers_at_once_then_killed_lose_nothing(data_dir):
    """Two processes share the pack and the index; kills land while both are writing."""
    rng = random.Random(7)
    all_acked = []
    for trial in range(5):
        writers = [start_writer(data_dir, 1000 + 2 * trial + n) for n in range(2)]
        # Each has acknowledged one put (however loaded the machine), and both are writing on.
        first = [writer.stdout.readline() for writer in writers]
        time.sleep(rng.uniform(0, 0.5))
        for writer, line in zip(writers, first):
            all_acked += kill_and_collect(writer, line)
    assert len(all_acked) >= 10
    with Store.open(data_dir) as store:
        check_acknowledged(store, all_acked)
        assert store.fsck().ok
