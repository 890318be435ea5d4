"""Peers that hold only part of an object (a killed or running fetch): their held ranges are used,
the rest comes from elsewhere, and "not held" is not a bad answer."""

from __future__ import annotations

import json
import os

import httpx

from permastore.protocol import merkle
from permastore.protocol.tx import Transaction
from permastore.sources.proofs import encode_leaves
from permastore.store import Store

from .conftest import seeded
from .proxy import NodeProxy
from .test_pull import hold_everywhere, pull

MIB = 1024 * 1024
CHUNK = merkle.MAX_CHUNK_SIZE


def hold_part(folder, source, object_id: str, data: bytes, spans: list[tuple[int, int]]) -> None:
    """Given a folder, a folder holding the tx whole and chunk-index spans [first, last), make the
    folder hold only those chunks of it: a partial object, as a killed pull leaves it."""
    with Store.open(source) as store:
        tx = Transaction.from_json(json.loads(store.raw_header(object_id)))
    chunks = [c for c in merkle.chunks_for(data) if c.max_byte_range > c.min_byte_range]
    with Store.open(folder) as store:
        store.put_tx(Transaction(**{**tx.__dict__, "data": b""}), None)
        writer = store.open_partial(object_id, "tx", len(data), leaves=encode_leaves(chunks))
        for first, last in spans:
            for chunk in chunks[first:last]:
                writer.write(chunk.min_byte_range, data[chunk.min_byte_range : chunk.max_byte_range], chunk.data_hash)
        writer.close()


def make_peers(nodes, jwk, data: bytes, parts: dict[str, list[tuple[int, int]] | None]) -> tuple[str, dict]:
    """Given named peers and the chunk spans each holds (None: all), start them behind counting proxies."""
    whole = seeded(nodes.tmp_path / "source", jwk)
    object_id = hold_everywhere([whole], data)
    for name, spans in parts.items():
        folder = seeded(nodes.tmp_path / name, jwk)
        if spans is None:
            with Store.open(whole) as store:
                tx = Transaction.from_json(json.loads(store.raw_header(object_id)))
            with Store.open(folder) as store:
                store.put_tx(tx, data)
        else:
            hold_part(folder, whole, object_id, data, spans)
    return object_id, {name: NodeProxy(nodes.start(name).url) for name in parts}


def test_two_partial_peers_together_give_the_whole_object(tmp_path, jwk, nodes):
    data = os.urandom(40 * CHUNK + 4321)  # 41 chunks
    object_id, peers = make_peers(nodes, jwk, data, {"p": [(0, 20)], "q": [(20, 41)]})
    try:
        folder = seeded(tmp_path / "d", jwk)
        run = pull(folder, object_id, *(p.url for p in peers.values()), extra=["--piece-chunks", "4"])
        assert run.returncode == 0, run.stderr
        assert "dropped" not in run.stderr and "0 chunks fetched again" in run.stderr
        assert peers["p"].sent == 20 * CHUNK and peers["q"].sent == len(data) - 20 * CHUNK  # each its part, once
        with Store.open(folder) as store:
            assert store.object_path(object_id).read_bytes() == data and store.fsck().ok
    finally:
        for proxy in peers.values():
            proxy.close()


def test_a_partial_peer_serves_what_it_holds_and_the_rest_comes_from_a_whole_one(tmp_path, jwk, nodes):
    data = os.urandom(24 * CHUNK + 99)  # 25 chunks; the partial peer holds 4-12 and 16-20
    object_id, peers = make_peers(nodes, jwk, data, {"part": [(4, 12), (16, 20)], "whole": None})
    try:
        base = f"http://{peers['part'].host}:{peers['part'].port}"
        leaves = httpx.get(f"{base}/leaves/{object_id}")
        assert leaves.status_code == 200
        assert leaves.headers["x-permastore-held"] == f"{4 * CHUNK}-{12 * CHUNK - 1},{16 * CHUNK}-{20 * CHUNK - 1}"
        held = httpx.get(f"{base}/raw/{object_id}", headers={"Range": f"bytes={5 * CHUNK}-{7 * CHUNK + 9}"})
        assert held.status_code == 206 and held.content == data[5 * CHUNK : 7 * CHUNK + 10]
        missing = httpx.get(f"{base}/raw/{object_id}", headers={"Range": f"bytes={11 * CHUNK}-{13 * CHUNK}"})
        assert missing.status_code == 404 and "not held" in missing.json()["error"]
        assert httpx.get(f"{base}/raw/{object_id}").status_code == 404  # the whole object: not here yet

        folder = seeded(tmp_path / "d", jwk)
        run = pull(folder, object_id, peers["part"].url, peers["whole"].url, extra=["--piece-chunks", "2"])
        assert run.returncode == 0, run.stderr
        assert "dropped" not in run.stderr
        assert 0 < peers["part"].sent <= 12 * CHUNK  # some of its 12 chunks, never one it lacks
        assert peers["part"].sent + peers["whole"].sent == len(data)
        with Store.open(folder) as store:
            assert store.object_path(object_id).read_bytes() == data and store.fsck().ok
    finally:
        for proxy in peers.values():
            proxy.close()


def test_chunks_no_peer_holds_fail_the_pull_at_once_with_the_reason(tmp_path, jwk, nodes):
    data = os.urandom(12 * CHUNK + 5)  # 13 chunks; chunks 6 and 7 are held by nobody
    object_id, peers = make_peers(nodes, jwk, data, {"p": [(0, 6)], "q": [(8, 13)]})
    try:
        folder = seeded(tmp_path / "d", jwk)
        run = pull(folder, object_id, *(p.url for p in peers.values()))
        assert run.returncode != 0 and object_id not in run.stdout
        assert "is held by no peer" in run.stderr, run.stderr
        with Store.open(folder) as store:
            assert not store.info(object_id).data_complete and store.fsck().ok
    finally:
        for proxy in peers.values():
            proxy.close()


def test_a_chunk_peer_answering_not_held_keeps_its_place_until_it_proves_useless():
    """The scheduler alone (the /chunk route: an Arweave node holds what its storage modules cover)."""
    from permastore.sources.scheduler import LACK_LIMIT, ChunkScheduler, FetchSettings, Lane, Unit

    units = [Unit(i, i * CHUNK, (i + 1) * CHUNK) for i in range(40)]
    some, none_, whole = Lane("some", "chunk"), Lane("none", "chunk"), Lane("whole", "chunk")
    scheduler = ChunkScheduler(units, [some, none_, whole], FetchSettings(hedge=False))
    job = scheduler.next(some)
    scheduler.delivered(job, job.units[0])
    scheduler.finished_job(job)
    for _ in range(LACK_LIMIT + 2):  # "some" lacks everything else it is asked: it delivered, it stays
        job = scheduler.next(some)
        scheduler.not_held(job, "404")
        scheduler.finished_job(job)
    assert not some.dropped and some.lacked == LACK_LIMIT + 2
    for number in range(LACK_LIMIT):
        assert not none_.dropped, number
        job = scheduler.next(none_)
        scheduler.not_held(job, "404")
        scheduler.finished_job(job)
    assert none_.dropped and "holds none of the" in none_.dropped
    assert not scheduler.failed  # "whole" may still send every chunk
    job = scheduler.next(whole)
    assert job.units[0].index == 1 and some in scheduler.excluded[1]  # what a peer lacked goes to another


def test_a_partial_peer_past_what_it_holds_does_not_hold_back_the_others():
    """A peer with nothing it may send is not "waiting for its share": the others keep their budget."""
    import threading

    from permastore.sources.scheduler import ChunkScheduler, FetchSettings, Lane, Unit

    units = [Unit(i, i * CHUNK, (i + 1) * CHUNK) for i in range(40)]
    part, whole = Lane("part", "raw", holding=frozenset(range(4))), Lane("whole", "raw")
    scheduler = ChunkScheduler(units, [part, whole], FetchSettings(piece_chunks=4, hedge=False))
    job = scheduler.next(part)
    assert [u.index for u in job.units] == [0, 1, 2, 3]
    for unit in job.units:
        scheduler.delivered(job, unit)
    scheduler.finished_job(job)
    first = scheduler.next(whole)  # in flight while the partial peer asks for more and finds none
    idle = threading.Thread(target=scheduler.next, args=(part,), daemon=True)
    idle.start()
    got: list = []
    asker = threading.Thread(target=lambda: got.append(scheduler.next(whole)), daemon=True)
    asker.start()
    asker.join(3)
    try:
        assert got and got[0].units[0].index == first.units[-1].index + 1
    finally:
        scheduler.fail("test over")
        idle.join(3)
