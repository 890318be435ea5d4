"""The store as a composition of parts: none reaches into another's privates, and closing the
Store closes what every part opened (connections of every thread, segment files)."""

from __future__ import annotations

import ast
import os
import sqlite3
import threading
from pathlib import Path

import pytest

import permastore.store
from permastore.store import Store
from tests.store.conftest import pseudo_random

STORE_PACKAGE = Path(permastore.store.__file__).parent


def _reach_ins(path: Path) -> list[str]:
    """Uses of a private attribute (``_name``) on something that is not ``self``/``cls`` and
    whose name says it is the store (``store._x``, ``self.store._x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else None
        if name in ("store", "_store"):
            found.append(f"{path.relative_to(STORE_PACKAGE.parent.parent)}:{node.lineno}: {name}.{node.attr}")
    return found


def test_no_module_of_the_store_reaches_into_the_stores_privates():
    parts = [path for path in sorted(STORE_PACKAGE.rglob("*.py")) if path.name != "store.py"]  # Store's own module
    offenders = [hit for path in parts for hit in _reach_ins(path)]
    assert offenders == []


def test_the_store_has_no_mixins():
    assert Store.__mro__ == (Store, object)


def test_close_closes_the_connections_of_every_thread_and_the_segment_files(data_dir):
    store = Store.open(data_dir)
    big = pseudo_random(3 * 256 * 1024 + 7)
    id = store.put_data(big).id
    connections = [store.db]

    def read_elsewhere():
        connections.append(store.db)
        assert b"".join(store.read(id)) == big

    worker = threading.Thread(target=read_elsewhere)
    worker.start()
    worker.join()
    assert connections[0] is not connections[1]
    with store.segments.files.opened(next(p.name for p in store.segments_dir.glob("*.seg"))) as fd:
        os.fstat(fd)  # open, and kept open by the catalog after the block (a cache of descriptors)
    os.fstat(fd)
    store.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the store
    for conn in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError):
        store.index.known_chunk(b"\0" * 32)  # the shared lookup is closed too
    reopened = Store.open(data_dir)  # nothing left locked or open: the folder opens again
    try:
        assert b"".join(reopened.read(id)) == big
        assert reopened.fsck().ok
    finally:
        reopened.close()
