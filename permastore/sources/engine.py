"""Fetcher: the node's fetch engine (``fetch(id)``), one session per ID, shared by every caller.

The gateway (``serve --peer``, read-through), ``permastore pull`` and inference (a model
by ID) all go through one Fetcher: however many ask for an ID, one session fetches it;
the rate cap and the peers are shared; a bounded number of sessions run at once.

    fetcher = Fetcher(store, PeerSet(["http://a:1984", "http://b:1984"]))
    info = fetcher.fetch(model_id)            # every byte proven and durable, or raises
    session = fetcher.session(id)             # or: stream it while it arrives
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

from permastore.sources.base import UpstreamError
from permastore.sources.limits import FetchLimits
from permastore.sources.peer_set import PeerSet
from permastore.sources.planner import FetchPlanner
from permastore.sources.rate_limit import TokenBucket
from permastore.sources.scheduler import FetchSettings
from permastore.sources.session import FetchSession

DEFAULT_MAX_SESSIONS = 8
ASKING_THREADS = 32  # headers, offsets, leaf lists: asked of every peer at once


class FetcherBusy(UpstreamError):
    """As many fetches as the node allows are running: retry later."""

    busy = True


class Fetcher:
    """Given the store and the peers (a PeerSet, or URLs), fetch objects by ID, every chunk proven."""

    def __init__(self, store, peers, settings: FetchSettings | None = None, limits: FetchLimits | None = None,
                 max_sessions: int = DEFAULT_MAX_SESSIONS):  # fmt: skip
        self.store = store
        self.settings = settings or FetchSettings()
        self.limits = limits or (peers.limits if isinstance(peers, PeerSet) else FetchLimits())
        self.peers = peers if isinstance(peers, PeerSet) else PeerSet(list(peers), self.limits)
        self.bucket = TokenBucket(self.settings.max_rate)
        self.max_sessions = max_sessions
        self.executor = concurrent.futures.ThreadPoolExecutor(ASKING_THREADS, thread_name_prefix="peer-ask")
        self._sessions: dict[str, FetchSession] = {}
        self._lock = threading.Lock()
        self._learnt = False

    def learn_peers(self) -> None:
        """Once per Fetcher, when the PeerSet may learn peers (opt-in), ask the known peers for theirs."""
        with self._lock:
            if self._learnt or not self.peers.learn:
                return
            self._learnt = True
        self.peers.learn_more()

    @property
    def planner(self) -> FetchPlanner:
        """A planner over the peers known now (the set may have grown)."""
        return FetchPlanner(self.store, self.peers.clients(), self.executor, self.limits, self.fetch)

    def session(self, id: str, bounded: bool = True) -> FetchSession:
        """Given an ID, return its running session, or start one (FetcherBusy past the bound)."""
        with self._lock:
            running = self._sessions.get(id)
            if running is not None:
                return running
            if bounded and len(self._sessions) >= self.max_sessions:
                raise FetcherBusy(f"{self.max_sessions} fetches are running; retry later")
            running = self._sessions[id] = FetchSession(self, id)
        return running.start()

    def active(self, id: str) -> FetchSession | None:
        """Given an ID, return the session fetching it now, or None."""
        with self._lock:
            return self._sessions.get(id)

    def fetch(self, id: str, timeout: float | None = None):
        """Given an ID, return its ObjectInfo once every byte is proven and durable here (fetched if missing)."""
        info = self.store.info(id)
        if info is not None and info.data_complete:
            return info
        return self.session(id, bounded=False).wait(timeout)

    def fetch_header(self, id: str) -> bool:
        """Given a tx ID, keep its verified header (data may follow later); True when stored."""
        if self.store.info(id) is not None:
            return True
        return self.planner.header_only(id)

    def _finished(self, session: FetchSession) -> None:
        with self._lock:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]

    def close(self, timeout: float = 30.0) -> None:
        """Stop fetching: running sessions end (what they wrote is flushed, to resume later;
        one whose chunks are all in completes first), then the peers' connections close."""
        with self._lock:
            running = list(self._sessions.values())
        for session in running:
            session.stop("the node is shutting down")
        deadline = time.monotonic() + timeout
        for session in running:
            session.thread.join(max(deadline - time.monotonic(), 0.1))
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.peers.close()
