"""PeerSet: the peers a node fetches from: those it was given, and (opt-in, bounded) those they list."""

from __future__ import annotations

import logging
import re
import threading

import httpx

from permastore.sources.limits import FetchLimits
from permastore.sources.peer_client import PeerClient
from permastore.sources.upstream import make_client

log = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")  # Arweave's /peers entries: "1.2.3.4:1984"
MAX_CONNECTIONS = 64


def peer_url(entry: str) -> str | None:
    """Given a /peers entry ("host:port" or an http(s) URL), return the peer's base URL, or None."""
    if not isinstance(entry, str) or len(entry) > 256:
        return None
    if re.match(r"^https?://[^\s/?#]+$", entry.rstrip("/")):
        return entry.rstrip("/")
    if _HOST_PORT.match(entry):
        return f"http://{entry}"
    return None


class PeerSet:
    """Given peer URLs (in order of preference) and limits, hold one PeerClient per peer.

    With ``learn`` > 0, ``learn_more()`` adds up to that many peers found on the known
    peers' ``GET /peers`` (never more, and only http(s) ones); 0 keeps the set as given.
    """

    def __init__(self, urls: list[str], limits: FetchLimits | None = None, learn: int = 0):
        self.limits = limits or FetchLimits()
        self.learn = learn
        self.learned: list[str] = []
        self._client = make_client(self.limits, MAX_CONNECTIONS, tls=False)  # one pool for every http:// peer
        self._tls_client: httpx.Client | None = None  # https:// peers: built (CA store loaded) when one is added
        self._peers: dict[str, PeerClient] = {}
        self._lock = threading.Lock()
        for url in urls:
            self.add(url)

    def add(self, url: str) -> PeerClient:
        """Given a base URL, return its PeerClient (added once)."""
        url = url.rstrip("/")
        with self._lock:
            client = self._peers.get(url)
            if client is None:
                client = self._peers[url] = PeerClient(url, client=self._client_for(url), limits=self.limits)
            return client

    def _client_for(self, url: str) -> httpx.Client:
        if not url.lower().startswith("https://"):
            return self._client
        if self._tls_client is None:
            self._tls_client = make_client(self.limits, MAX_CONNECTIONS)
        return self._tls_client

    def clients(self) -> list[PeerClient]:
        with self._lock:
            return list(self._peers.values())

    def urls(self) -> list[str]:
        with self._lock:
            return list(self._peers)

    def learn_more(self) -> list[str]:
        """Ask the known peers for theirs; add new ones up to the ``learn`` bound; return those added."""
        added: list[str] = []
        for client in self.clients():
            if len(self.learned) >= self.learn:
                break
            for entry in client.peer_list():
                url = peer_url(entry)
                if url is None or url in self._peers or len(self.learned) >= self.learn:
                    continue
                self.add(url)
                self.learned.append(url)
                added.append(url)
        if added:
            log.info("learned %d peers: %s", len(added), ", ".join(added))
        return added

    def close(self) -> None:
        self._client.close()
        if self._tls_client is not None:
            self._tls_client.close()
