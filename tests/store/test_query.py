"""Tag, owner, ID and recipient queries with cursor pagination."""

from __future__ import annotations

import pytest

from permastore.protocol import ans104, b64url
from permastore.store import InvalidQuery, Query

from .conftest import tags


@pytest.fixture
def populated(store, ed_signer):
    """Twelve objects: 'App' tags alternate, two owners, one with a recipient."""
    ids = []
    for n in range(10):
        info = store.put_data(f"object {n}".encode(), tags=tags(App="even" if n % 2 == 0 else "odd", N=str(n)))
        ids.append(info.id)
    recipient = bytes(range(32))
    item = ans104.build_item(ed_signer, b"to someone", tags(App="even"), target=recipient)
    ids.append(store.put_item(item).id)
    ids.append(store.put_data(b"untagged").id)
    return store, ids, b64url.encode(recipient)


def collect(store, query: Query) -> list[str]:
    seen = []
    while True:
        page = store.query(query)
        seen += [i.id for i in page.items]
        if not page.has_next:
            assert len(page.items) <= query.first
            return seen
        query.after = page.next_cursor


def test_tag_query_pages_through_everything_newest_first_without_repeats(populated):
    store, ids, _ = populated
    expected = [ids[10]] + [ids[n] for n in (8, 6, 4, 2, 0)]
    assert collect(store, Query(tags=[("App", ["even"])], first=4)) == expected
    assert collect(store, Query(tags=[("App", ["even"])], first=1, sort="HEIGHT_ASC")) == expected[::-1]


def test_tag_values_are_or_and_tags_are_and(populated):
    store, ids, _ = populated
    got = collect(store, Query(tags=[("N", ["1", "2", "3"])], first=100))
    assert got == [ids[3], ids[2], ids[1]]
    got = collect(store, Query(tags=[("N", ["1", "2", "3"]), ("App", ["odd"])], first=100))
    assert got == [ids[3], ids[1]]
    assert collect(store, Query(tags=[("App", [])], first=100)) == ids[:11][::-1]  # any value


def test_owner_id_and_recipient_filters(populated, ed_signer):
    store, ids, recipient = populated
    node = store.info(ids[0]).owner_address
    assert len(collect(store, Query(owners=[node], first=5))) == 11
    item_owner = store.info(ids[10]).owner_address
    assert collect(store, Query(owners=[item_owner])) == [ids[10]]
    assert collect(store, Query(recipients=[recipient])) == [ids[10]]
    assert collect(store, Query(ids=[ids[3], ids[5], "A" * 43])) == [ids[5], ids[3]]


def test_height_ordering_puts_pending_first_then_highest(populated):
    store, ids, _ = populated
    store.mine_block()
    newer = store.put_data(b"pending one", tags=tags(App="even")).id
    got = collect(store, Query(tags=[("App", ["even"])], first=2))
    assert got[0] == newer and got[1:] == [ids[10]] + [ids[n] for n in (8, 6, 4, 2, 0)]
    assert collect(store, Query(tags=[("App", ["even"])], min_height=0, first=50))[0] == ids[10]


def test_bad_queries_are_clear_errors(populated):
    store, _, _ = populated
    with pytest.raises(InvalidQuery):
        store.query(Query(after="not a cursor"))
    with pytest.raises(InvalidQuery):
        store.query(Query(first=-1))
    with pytest.raises(InvalidQuery):
        store.query(Query(sort="SIDEWAYS"))
    assert store.query(Query(first=0)).items == []
