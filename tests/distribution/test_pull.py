"""Issue 8 with real nodes on 127.0.0.1: an object pulled from several peers at once, every chunk proven."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction
from permastore.store import Store

from .conftest import seeded
from .proxy import NodeProxy

MIB = 1024 * 1024
PERMASTORE = Path(sys.executable).parent / "permastore"


def hold_everywhere(folders: list[Path], data: bytes, name: str = "blob") -> str:
    """The first folder stores data as its own upload (a signed L1 tx), the others the same tx; return its ID.

    Each later folder stores something else first, so the tx sits at another weave offset there.
    """
    with Store.open(folders[0]) as store:
        info = store.put_data(data, tags=[Tag(b"Name", name.encode())], content_type="application/x-test")
        tx = Transaction.from_json(json.loads(store.raw_header(info.id)))
    for number, folder in enumerate(folders[1:], 1):
        with Store.open(folder) as store:
            store.put_data(os.urandom(300_000 * number))
            store.put_tx(tx, data)
    return info.id


def pull(folder: Path, object_id: str, *peers: str, extra=(), timeout=300) -> subprocess.CompletedProcess:
    args = [str(PERMASTORE), "--data", str(folder), "pull", object_id, *extra]
    for url in peers:
        args += ["--peer", url]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def three_peers(nodes, jwk):
    """Three nodes holding the same 16 MiB tx, each behind a counting proxy; yields (data, id, proxies)."""
    data = os.urandom(16 * MIB + 12345)
    folders = [seeded(nodes.tmp_path / name, jwk) for name in ("a", "b", "c")]
    object_id = hold_everywhere(folders, data)
    proxies = [NodeProxy(nodes.start(name).url) for name in ("a", "b", "c")]
    yield data, object_id, proxies
    for proxy in proxies:
        proxy.close()


def test_an_object_is_pulled_from_several_peers_byte_exact(tmp_path, jwk, three_peers):
    data, object_id, proxies = three_peers
    folder = seeded(tmp_path / "d", jwk)
    run = pull(folder, object_id, *(p.url for p in proxies))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == object_id
    assert "pulled" in run.stderr and "0 chunks fetched again" in run.stderr
    assert all(p.sent > 0 for p in proxies), [p.sent for p in proxies]  # every peer served a share
    assert sum(p.sent for p in proxies) < len(data) * 1.15  # hedges aside, each byte came once
    with Store.open(folder) as store:
        info = store.info(object_id)
        assert info.kind == "tx" and info.data_complete and info.content_type == "application/x-test"
        path = store.object_path(object_id)
        assert path.parent.name == "segments" and path.read_bytes() == data  # the segment is the object
        assert store.fsck().ok
    again = pull(folder, object_id, *(p.url for p in proxies))
    assert again.returncode == 0 and again.stdout.strip() == object_id  # held: nothing to do


def test_a_killed_pull_resumes_with_only_what_was_missing(tmp_path, jwk, three_peers):
    data, object_id, proxies = three_peers
    folder = seeded(tmp_path / "d", jwk)
    args = [str(PERMASTORE), "--data", str(folder), "pull", object_id, "--max-rate", "6M"]
    for proxy in proxies:
        args += ["--peer", proxy.url]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held = 0
    try:
        deadline = time.monotonic() + 60
        while held < 0.4 * len(data) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
            with Store.open(folder) as store:
                partial = store.partial_info(object_id)
                held = partial.held_bytes if partial else 0
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    with Store.open(folder) as store:
        durable = store.partial_info(object_id).held_bytes
        assert store.fsck().ok  # a partial object is not corrupt
    assert 0.3 * len(data) <= durable < len(data)
    for proxy in proxies:
        proxy.reset()
    run = pull(folder, object_id, *(p.url for p in proxies))
    assert run.returncode == 0, run.stderr
    sent = sum(p.sent for p in proxies)
    assert len(data) - durable <= sent <= len(data) - durable + 8 * MIB, (sent, durable)
    with Store.open(folder) as store:
        assert store.object_path(object_id).read_bytes() == data and store.partial_info(object_id) is None


def test_a_peer_flipping_bytes_is_dropped_and_the_pull_still_completes(tmp_path, jwk, nodes, three_peers):
    data, object_id, proxies = three_peers
    bad = NodeProxy(proxies[2].url, flip=True)
    try:
        folder = seeded(tmp_path / "d", jwk)
        # A rate cap and small pieces keep the pull long enough for the bad peer to be asked again;
        # listed first, it is asked from the start (the good peers alone could finish before its third answer).
        extra = ["--max-rate", "8M", "--piece-chunks", "4"]
        run = pull(folder, object_id, bad.url, proxies[0].url, proxies[1].url, extra=extra)
        assert run.returncode == 0, run.stderr
        assert f"dropped {bad.url}" in run.stderr and "bad chunks" in run.stderr
        assert bad.flipped >= 3
        with Store.open(folder) as store:
            assert store.object_path(object_id).read_bytes() == data and store.fsck().ok
    finally:
        bad.close()


def test_pull_fails_clearly_when_no_peer_has_it_or_proofs_fail_everywhere(tmp_path, jwk, three_peers):
    data, object_id, proxies = three_peers
    folder = seeded(tmp_path / "d", jwk)
    missing = pull(folder, "A" * 43, proxies[0].url)
    assert missing.returncode != 0 and "no peer has it" in missing.stderr
    liars = [NodeProxy(p.url, flip=True) for p in proxies]
    try:
        run = pull(folder, object_id, *(p.url for p in liars))
        assert run.returncode != 0 and object_id not in run.stdout
        assert "bad chunks" in run.stderr or "failed its proof" in run.stderr
    finally:
        for liar in liars:
            liar.close()
    with Store.open(folder) as store:
        assert not store.info(object_id).data_complete  # the verified header is kept, nothing unproven


def test_an_item_with_no_l1_ancestor_is_pulled_from_several_peers_and_checked_at_the_end(tmp_path, nodes, jwk, ed_signer):
    """No per-chunk proof exists: ranges from every peer, the signature checked when complete; when it
    fails (a peer flipped bytes), the item is fetched again from one peer at a time."""
    from permastore.protocol import ans104

    item = ans104.build_item(ed_signer, os.urandom(6 * MIB + 3), [Tag(b"Kind", b"standalone")])
    header, item_data = ans104.parse_item(item)
    for name in ("a", "b"):
        with Store.open(seeded(nodes.tmp_path / name, jwk)) as store:
            store.put_item(item)
    peers = [NodeProxy(nodes.start(name).url) for name in ("a", "b")]
    bad = NodeProxy(peers[1].url, flip=True)
    try:
        clean = seeded(tmp_path / "clean", jwk)
        run = pull(clean, header.id, peers[0].url, peers[1].url, extra=["--piece-chunks", "4"])
        assert run.returncode == 0, run.stderr
        assert all(p.sent > 0 for p in peers)  # both peers served ranges of it
        mixed = seeded(tmp_path / "mixed", jwk)
        run = pull(mixed, header.id, bad.url, peers[0].url, extra=["--piece-chunks", "4"])
        assert run.returncode == 0, run.stderr
        assert bad.flipped > 0  # its bytes were in the first assembly, which did not verify
        for folder in (clean, mixed):
            with Store.open(folder) as store:
                assert b"".join(store.item_bytes(header.id)) == item and store.fsck().ok
                assert store.info(header.id).kind == "item"
    finally:
        for proxy in (*peers, bad):
            proxy.close()
