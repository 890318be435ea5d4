"""App assembly: route order, the small-object cache."""

from gateway.fastpath import MAX_CACHED_OBJECT, SmallObjectCache


def test_one_segment_routes_are_not_shadowed_by_ids(client):
    for path in ("/info", "/peers", "/tx_anchor", "/healthcheck", "/openapi.json", "/tx/pending"):
        assert client.get(path).status_code == 200, path


def test_cache_evicts_least_recently_used_within_its_budget():
    cache = SmallObjectCache(max_bytes=3000)
    for name in "abc":
        cache.put(name, name.encode() * 1000, {"Content-Type": "x"})
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", b"d" * 1000, {})
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("d") is not None
    cache.put("big", b"x" * (MAX_CACHED_OBJECT + 1), {})
    assert cache.get("big") is None
