"""Leases: which remote worker holds which queued call, until when; and the signed requests that ask for them.

A remote worker proves who it is with every request: the request JSON is the data of an
ANS-104 item signed by the worker's wallet, whose target is the head's address (so it
cannot be replayed against another head), holding a time within CLOCK_SKEW_S of the
head's clock and used once (the head remembers item IDs for that long).

A lease is bounded in time: the worker renews it with heartbeats while the call runs;
one not renewed within its TTL expires, and the LeaseBook hands its call back (to the
queue, for another worker or a local slot). A lease ends exactly once, under one lock:
completed, failed or expired. A Result sent on an ended lease is refused, so a call is
never answered twice.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from permastore.protocol import ans104, b64url
from permastore.protocol.errors import ProtocolError
from permastore.protocol.tags import Tag

CLOCK_SKEW_S = 120.0  # a signed request's time may be this far from the head's clock
SEEN_REQUESTS = 100_000  # signed request IDs remembered (a bound on memory; older ones are past their time)
REQUEST_APP = "permastore-herder"
REAP_INTERVAL_S = 0.2


class LeaseRefused(Exception):
    """A worker request the head refuses: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WorkerRequest:
    """A verified signed request: the worker's address and the request JSON."""

    worker: str
    body: dict[str, Any]


def sign_request(signer, head_address: str, body: dict[str, Any]) -> bytes:
    """Given the worker's signer, the head's address and a JSON body, return the signed request item."""
    data = json.dumps({**body, "time": time.time(), "nonce": secrets.token_hex(8)}).encode()
    tags = [Tag.text("App-Name", REQUEST_APP), Tag.text("Content-Type", "application/json")]
    return ans104.build_item(signer, data, tags, target=b64url.decode(head_address))


class RequestVerifier:
    """Given the head's address, verify signed worker requests (signature, target, time, used once)."""

    def __init__(self, head_address: str):
        self.head_address = head_address
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, raw: bytes) -> WorkerRequest:
        """Given request bytes, return who signed them and the JSON body; raise LeaseRefused (400/401/403)."""
        try:
            header = ans104.verify_item(raw)  # Security: the signature binds the worker to this body
            _, data = ans104.parse_item(raw)
            body = json.loads(data)
        except (ProtocolError, ValueError, UnicodeDecodeError) as exc:
            raise LeaseRefused(400, f"not a signed worker request (an ANS-104 item of JSON): {exc}") from None
        if not isinstance(body, dict):
            raise LeaseRefused(400, "a worker request's data must be a JSON object")
        if header.target is None or b64url.encode(header.target) != self.head_address:
            raise LeaseRefused(403, f"this request is not addressed to this head ({self.head_address})")
        sent = body.get("time")
        now = time.time()
        if not isinstance(sent, (int, float)) or abs(now - sent) > CLOCK_SKEW_S:
            raise LeaseRefused(401, f"request time missing or more than {CLOCK_SKEW_S:g} s from the head's clock")
        self._use_once(header.id, now)
        return WorkerRequest(header.owner_address, body)

    def _use_once(self, request_id: str, now: float) -> None:
        # Security: a captured request cannot be sent again within its time window.
        with self._lock:
            if request_id in self._seen:
                raise LeaseRefused(409, f"signed request {request_id} was already used")
            self._seen[request_id] = now
            while self._seen and (len(self._seen) > SEEN_REQUESTS
                                  or next(iter(self._seen.values())) < now - 2 * CLOCK_SKEW_S):
                self._seen.popitem(last=False)


@dataclass(eq=False)
class Lease:
    """One call held by one worker until `expires_at` (monotonic), renewed by heartbeats."""

    id: str
    worker: str
    work: Any  # what was leased: a queued herder Call, or a check (see verification)
    ttl_s: float
    deadline: float  # the lease cannot be renewed past this (the call's timeout)
    expires_at: float = 0.0
    started_at: float = field(default_factory=time.monotonic)

    def renew(self, now: float) -> None:
        self.expires_at = min(now + self.ttl_s, self.deadline)


class LeaseBook:
    """The live leases. `on_expired(lease)` is called (on the reaper thread) for each lease that lapses."""

    def __init__(self, ttl_s: float, on_expired: Callable[[Lease], None], on_tick: Callable[[], None] | None = None):
        self.ttl_s = ttl_s
        self.on_expired = on_expired
        self.on_tick = on_tick  # also run on the reaper thread, every REAP_INTERVAL_S
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.expired = 0
        self._reaper = threading.Thread(target=self._reap_loop, name="lease-reaper", daemon=True)
        self._reaper.start()

    def grant(self, worker: str, work: Any, timeout_s: float) -> Lease:
        """Given a worker and what it takes, return its new lease (TTL from now, never past timeout_s)."""
        now = time.monotonic()
        lease = Lease(secrets.token_urlsafe(18), worker, work, self.ttl_s, now + timeout_s)
        lease.renew(now)
        with self._lock:
            self._leases[lease.id] = lease
        return lease

    def renew(self, lease_id: str, worker: str) -> Lease:
        """Given a lease ID and the worker asking, extend it; raise LeaseRefused 409 when it has ended."""
        with self._lock:
            lease = self._held(lease_id, worker)
            lease.renew(time.monotonic())
            return lease

    def peek(self, lease_id: str, worker: str) -> Lease:
        """Return the live lease (409 when it has ended, 403 when another worker holds it)."""
        with self._lock:
            return self._held(lease_id, worker)

    def end(self, lease_id: str, worker: str) -> Lease:
        """End a live lease (the worker answered or gave up); return it. Raises LeaseRefused 409 / 403."""
        with self._lock:
            lease = self._held(lease_id, worker)
            del self._leases[lease_id]
            return lease

    def _held(self, lease_id: str, worker: str) -> Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseRefused(409, f"lease {lease_id} has ended (expired, answered or given up)")
        if lease.worker != worker:
            raise LeaseRefused(403, f"lease {lease_id} is held by another worker")
        return lease

    def held_by(self) -> dict[str, int]:
        """Return how many live leases each worker holds."""
        with self._lock:
            counts: dict[str, int] = {}
            for lease in self._leases.values():
                counts[lease.worker] = counts.get(lease.worker, 0) + 1
            return counts

    def live(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def _reap_loop(self) -> None:
        while not self._stop.wait(REAP_INTERVAL_S):
            self.reap()
            if self.on_tick is not None:
                self.on_tick()

    def reap(self) -> None:
        """End every lease past its expiry and hand each to on_expired."""
        now = time.monotonic()
        with self._lock:
            lapsed = [lease for lease in self._leases.values() if lease.expires_at <= now]
            for lease in lapsed:
                del self._leases[lease.id]
            self.expired += len(lapsed)
        for lease in lapsed:
            self.on_expired(lease)

    def close(self) -> list[Lease]:
        """Stop the reaper; return the leases still live (ended now)."""
        self._stop.set()
        self._reaper.join(5)
        with self._lock:
            left, self._leases = list(self._leases.values()), {}
        return left
