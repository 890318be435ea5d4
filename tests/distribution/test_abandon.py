"""`permastore pull --abandon ID`: a partially held object given up on is dropped, its space freed."""

from __future__ import annotations

import json
import os
import subprocess

from permastore.protocol import merkle
from permastore.store import Store

from .conftest import seeded
from .test_partial_peers import hold_part
from .test_pull import PERMASTORE, hold_everywhere

CHUNK = merkle.MAX_CHUNK_SIZE


def cli(folder, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(PERMASTORE), "--data", str(folder), *args], capture_output=True, text=True, timeout=120)


def test_abandon_drops_a_partial_object_and_info_and_fsck_agree(tmp_path, jwk):
    data = os.urandom(10 * CHUNK + 7)
    source = seeded(tmp_path / "source", jwk)
    object_id = hold_everywhere([source], data)
    folder = seeded(tmp_path / "d", jwk)
    hold_part(folder, source, object_id, data, [(0, 4)])
    segments = set((folder / "segments").iterdir())
    info = json.loads(cli(folder, "info", object_id).stdout)
    assert info["held"]["bytes"] == 4 * CHUNK

    with Store.open(folder) as store:  # a fetch filling it (here: this process) keeps it
        writer = store.open_partial(object_id, "tx", len(data))
        busy = cli(folder, "pull", "--abandon", object_id)
        writer.close()
    assert busy.returncode == 1 and "another process" in busy.stderr and "stop that fetch" in busy.stderr

    run = cli(folder, "pull", "--abandon", object_id)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == object_id
    assert f"{4 * CHUNK} of {len(data)} bytes held were released" in run.stderr
    left = set((folder / "segments").iterdir())
    assert len(segments - left) == 1 and not left - segments  # the partial object's segment is deleted
    info = json.loads(cli(folder, "info", object_id).stdout)
    assert "held" not in info and info["data_complete"] is False  # the verified tx header stays
    fsck = cli(folder, "fsck")
    assert fsck.returncode == 0 and "partially held" not in fsck.stdout, fsck.stdout
    with Store.open(folder) as store:
        assert store.partial_info(object_id) is None and store.partial_ids() == []

    again = cli(folder, "pull", "--abandon", object_id)
    assert again.returncode == 1 and "not partially held here" in again.stderr
    whole = cli(source, "pull", "--abandon", object_id)
    assert whole.returncode == 1 and "held whole" in whole.stderr
    nowhere = cli(folder, "pull", object_id)
    assert nowhere.returncode == 2 and "at least one --peer" in nowhere.stderr
