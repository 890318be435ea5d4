"""A fast path for small objects: `GET|HEAD /{id}` answered from memory, before routing.

Data under an ID never changes, so once an object's bytes have been read and
verified by the full route they may be served again from a bounded LRU cache
without touching SQLite or the disk. Anything unusual (Range, a manifest, an ID
not in the cache, any other path) goes through the full app.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import blake3
from starlette.types import Scope, Send

ID_PATH = re.compile(rb"/[A-Za-z0-9_-]{43}")
MAX_CACHED_OBJECT = 64 * 1024
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 65536
DEFAULT_MAX_AGE_S = 60.0  # a cached body is re-verified against its store copy this often
MAX_PENDING_CHECKS = 4096  # stale entries waiting for their re-check; past it, stale entries are misses
ENTRY_OVERHEAD = 600  # the entry, its dict slots, its key and its content index (measured, CPython 3.11)
HEADER_OVERHEAD = 120  # one (name, value) tuple of two bytes objects
# What the CORS middleware would add to a cross-origin GET; cached answers carry it themselves.
EXPOSED_HEADERS = ("Content-Range", "Content-Length", "ETag", "Accept-Ranges", "X-Ar-Io-Digest", "Digest", "X-Ar-Io-Data-Id")
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode()),
]


# Header values uvicorn would refuse (control bytes): such an answer is never cached, so an
# uploader's Content-Type tag cannot smuggle header lines into the bytes written directly.
UNSAFE_HEADER_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One cached 200: the body, its headers for ASGI, the same headers as HTTP/1.1 lines,
    the BLAKE3 of the body (the store's address of its one chunk) and when it was last verified."""

    body: bytes
    headers: list[tuple[bytes, bytes]]
    header_lines: bytes
    content: str
    verified_at: float

    @property
    def cost(self) -> int:
        """Bytes this entry holds, measured (tracemalloc): body, headers as lines and as objects, bookkeeping."""
        return len(self.body) + 2 * len(self.header_lines) + HEADER_OVERHEAD * len(self.headers) + ENTRY_OVERHEAD


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Given raw headers, return them as `name: value\r\n` lines."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


CORS_LINES = header_lines(CORS_HEADERS)


class SmallObjectCache:
    """Given a byte budget, keep verified small bodies and their response headers, least recently used out first.

    Security: an entry is keyed on verified content. Its store copy is verified again once it
    is `max_age_s` old (by one background thread, `start_reverifying`, while the entry keeps
    being answered; without that thread a stale entry is a miss and the full route verifies),
    and it is dropped at once when that check, or any read, finds a stored chunk with its
    content bad (`drop_content`): an object whose copy on disk rotted is never answered from
    memory once that is known, and it is known within about `max_age_s` of its next request.
    The budget counts headers and bookkeeping as well as bodies, and entries are capped in
    number, so many tiny (or empty) objects cannot grow the cache past its budget.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, max_age_s: float = DEFAULT_MAX_AGE_S,
                 max_entries: int = DEFAULT_MAX_ENTRIES):
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._by_content: dict[str, set[str]] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # filled from worker threads, read on the event loop
        self._verify: Callable[[str], bool] | None = None
        self._checking: set[str] = set()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._checker: threading.Thread | None = None

    def start_reverifying(self, verify: Callable[[str], bool]) -> None:
        """Given verify(ID) -> whether the store copy still verifies, re-check stale entries in the background."""
        self._verify = verify
        self._checker = threading.Thread(target=self._reverify_loop, name="cache-reverify", daemon=True)
        self._checker.start()

    def stop_reverifying(self) -> None:
        """Stop the background checks (before the store they read is closed)."""
        self._verify = None
        if self._checker is not None:
            self._queue.put(None)
            self._checker.join(timeout=30)
            self._checker = None

    def _reverify_loop(self) -> None:
        while (object_id := self._queue.get()) is not None:
            verify = self._verify
            try:
                fine = verify is not None and verify(object_id)
            except Exception:  # a check that cannot run is a check that did not pass
                fine = False
            with self._lock:
                self._checking.discard(object_id)
                entry = self._entries.get(object_id)
                if entry is not None:
                    if fine:
                        self._entries[object_id] = replace(entry, verified_at=time.monotonic())
                    else:
                        self._remove_locked(object_id)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def get(self, object_id: str) -> CachedAnswer | None:
        """Given an ID, return its entry while its store copy was verified recently, else None."""
        with self._lock:
            entry = self._entries.get(object_id)
            if entry is None:
                return None
            if time.monotonic() - entry.verified_at > self.max_age_s and not self._check_later_locked(object_id):
                return None  # stale and no check can be queued: the full route verifies the stored copy
            self._entries.move_to_end(object_id)
            return entry

    def _check_later_locked(self, object_id: str) -> bool:
        """Given a stale entry's ID, queue a check of its store copy; False when none can be queued."""
        if self._verify is None or (object_id not in self._checking and len(self._checking) >= MAX_PENDING_CHECKS):
            return False
        if object_id not in self._checking:
            self._checking.add(object_id)
            self._queue.put(object_id)
        return True

    def put(self, object_id: str, body: bytes, headers: dict[str, str]) -> None:
        """Given a verified full body and its 200 headers, remember them (bodies over 64 KiB are not kept)."""
        if len(body) > MAX_CACHED_OBJECT or self.max_bytes <= 0 or self.max_entries <= 0:
            return
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw_headers.append((b"vary", b"Origin"))  # as the CORS middleware marks every answer
        if any(UNSAFE_HEADER_VALUE.search(value) for _, value in raw_headers):
            return  # security: the full route (and uvicorn's checks) answer it instead
        content = blake3.blake3(body).hexdigest()
        entry = CachedAnswer(body, raw_headers, header_lines(raw_headers), content, time.monotonic())
        with self._lock:
            self._remove_locked(object_id)
            self._entries[object_id] = entry
            self._by_content.setdefault(content, set()).add(object_id)
            self._bytes += entry.cost
            while self._entries and (self._bytes > self.max_bytes or len(self._entries) > self.max_entries):
                self._remove_locked(next(iter(self._entries)))

    def drop(self, object_id: str) -> None:
        """Given an ID, forget its entry."""
        with self._lock:
            self._remove_locked(object_id)

    def drop_content(self, content: str) -> None:
        """Given the hex BLAKE3 of a stored chunk found bad, forget every entry with that content."""
        with self._lock:
            for object_id in list(self._by_content.get(content, ())):
                self._remove_locked(object_id)

    def _remove_locked(self, object_id: str) -> None:
        entry = self._entries.pop(object_id, None)
        if entry is None:
            return
        self._bytes -= entry.cost
        sharing = self._by_content.get(entry.content)
        if sharing is not None:
            sharing.discard(object_id)
            if not sharing:
                del self._by_content[entry.content]


def cacheable_request(method: str | bytes, raw_path: bytes, query: bytes | None, headers) -> tuple[str, bool] | None:
    """Given a request's method, path, query and lowercased headers, return (ID, has Origin) when the cache may answer."""
    if method not in ("GET", "HEAD", b"GET", b"HEAD"):
        return None
    if len(raw_path) != 44 or query or not ID_PATH.fullmatch(raw_path):
        return None
    cross_origin = False
    for name, _ in headers:
        if name in (b"range", b"if-none-match"):
            return None  # conditional and partial requests take the full route
        if name == b"origin":
            cross_origin = True
    return raw_path[1:].decode(), cross_origin


class FastPath:
    """Answer plain `GET|HEAD /{id}` from the cache; say None for everything else."""

    def __init__(self, cache: SmallObjectCache):
        self.cache = cache

    async def try_serve(self, scope: Scope, send: Send) -> bool:
        """Given a request, serve it from the cache and return True, or return False to route it."""
        found = self._lookup(scope)
        if found is None:
            return False
        entry, cross_origin = found
        headers = entry.headers + CORS_HEADERS if cross_origin else entry.headers
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else entry.body})
        return True

    def _lookup(self, scope: Scope):
        """Given a request, return (cache entry, has an Origin header) when the cache can answer it."""
        if scope["type"] != "http":
            return None
        raw_path = scope.get("raw_path") or scope["path"].encode()
        request = cacheable_request(scope["method"], raw_path, scope.get("query_string"), scope["headers"])
        if request is None:
            return None
        entry = self.cache.get(request[0])
        return None if entry is None else (entry, request[1])
