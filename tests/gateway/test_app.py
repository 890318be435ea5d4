"""App assembly: route order, the small-object cache."""

from gateway.fastpath import ENTRY_OVERHEAD, MAX_CACHED_OBJECT, SmallObjectCache


def test_one_segment_routes_are_not_shadowed_by_ids(client):
    for path in ("/info", "/peers", "/tx_anchor", "/healthcheck", "/openapi.json", "/tx/pending"):
        assert client.get(path).status_code == 200, path


def test_cache_evicts_least_recently_used_within_its_budget():
    probe = SmallObjectCache()
    probe.put("p", b"p" * 1000, {"Content-Type": "x"})
    cache = SmallObjectCache(max_bytes=3 * probe.bytes_held)  # room for three such entries
    for name in "abc":
        cache.put(name, name.encode() * 1000, {"Content-Type": "x"})
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", b"d" * 1000, {"Content-Type": "x"})
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("d") is not None
    assert cache.bytes_held <= cache.max_bytes
    cache.put("big", b"x" * (MAX_CACHED_OBJECT + 1), {})
    assert cache.get("big") is None


def test_cache_counts_headers_and_entries_so_empty_bodies_cannot_grow_it():
    cache = SmallObjectCache(max_bytes=1024 * 1024, max_entries=100)
    for n in range(10_000):
        cache.put(f"{n:043d}", b"", {"Content-Type": "text/plain", "X-Ar-Io-Data-Id": f"{n:043d}"})
    assert len(cache) == 100 and 0 < cache.bytes_held <= 1024 * 1024
    tight = SmallObjectCache(max_bytes=50 * (ENTRY_OVERHEAD + 200))
    for n in range(10_000):
        tight.put(f"{n:043d}", b"", {"Content-Type": "text/plain"})
    assert len(tight) <= tight.max_bytes // ENTRY_OVERHEAD and tight.bytes_held <= tight.max_bytes


def test_cache_drops_every_object_with_content_found_bad_and_re_verifies_stale_entries(monkeypatch):
    import blake3

    cache = SmallObjectCache(max_age_s=60)
    for name in ("one", "two"):
        cache.put(name, b"same bytes", {})  # two IDs, one stored chunk
    cache.put("other", b"other bytes", {})
    cache.drop_content(blake3.blake3(b"same bytes").hexdigest())
    assert cache.get("one") is None and cache.get("two") is None and cache.get("other") is not None
    clock = [1000.0]
    monkeypatch.setattr("gateway.fastpath.time.monotonic", lambda: clock[0])
    cache.put("fresh", b"fresh", {})
    clock[0] += 61
    assert cache.get("fresh") is None  # stale: the full route must verify the stored copy again
    cache.put("fresh", b"fresh", {})
    assert cache.get("fresh") is not None


def test_stale_entries_are_served_while_their_store_copy_is_checked_in_the_background(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("gateway.fastpath.time.monotonic", lambda: clock[0])
    checked, verdicts = [], {"good": True, "rotten": False}
    cache = SmallObjectCache(max_age_s=60)
    cache.start_reverifying(lambda object_id: checked.append(object_id) or verdicts[object_id])
    try:
        for name in verdicts:
            cache.put(name, name.encode(), {})
        clock[0] += 61
        assert cache.get("good") is not None and cache.get("rotten") is not None  # stale: served, checks queued
        for _ in range(200):
            if sorted(checked) == ["good", "rotten"] and cache.get("rotten") is None:
                break
            import time

            time.sleep(0.01)
        assert sorted(checked) == ["good", "rotten"]
        assert cache.get("rotten") is None  # its copy failed the check: gone
        assert cache.get("good") is not None and checked.count("good") == 1  # verified again: fresh for 60 s
    finally:
        cache.stop_reverifying()
    clock[0] += 61
    assert cache.get("good") is None  # no checker: a stale entry is a miss, the full route verifies
