"""A worker node's HTTP link to its head: keep-alive HTTP/1.1 connections, one per thread.

    link = HeadLink("http://head:1984", timeout_s=40)
    answer = link.post("/herder/lease", signed_item, params={"wait_s": 10})
    answer.status_code, answer.json(), answer.text

A busy worker sends one request per call (its Result, answered with its next lease), so
what a request costs the worker is on every call: the standard library's `http.client`
over a connection kept open costs a fraction of a general-purpose client's request
building (URL objects, cookies, hooks). Each thread (a worker slot, the heartbeat) has its
own connection, so a long poll on one never holds up another.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

OCTET = {"Content-Type": "application/octet-stream"}
# How a kept-open connection the head closed meanwhile fails (its keep-alive timeout).
CLOSED_BY_HEAD = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class HeadUnreachable(Exception):
    """The head could not be reached, or the connection broke before its answer."""


@dataclass(frozen=True)
class HeadAnswer:
    """The head's answer to one request: status and body."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class HeadLink:
    """Given the head's base URL and a timeout, send requests to it over kept-open connections."""

    def __init__(self, base_url: str, timeout_s: float):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid head URL {base_url!r}: expected http(s)://host[:port]")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._every: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self, path: str) -> HeadAnswer:
        return self.request("GET", path)

    def post(self, path: str, content: bytes, params: dict[str, Any] | None = None) -> HeadAnswer:
        return self.request("POST", path, content, params)

    def request(self, method: str, path: str, content: bytes | None = None,
                params: dict[str, Any] | None = None) -> HeadAnswer:
        """Send one request; return the answer. Raises HeadUnreachable.

        A connection kept open may have been closed by the head meanwhile (its keep-alive
        timeout): a request that fails on a reused connection is sent once more on a new one.
        """
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = OCTET if content is not None else {}
        for attempt in (0, 1):
            connection, reused = self._connection()
            try:
                connection.request(method, target, body=content, headers=headers)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                if reused and attempt == 0 and isinstance(exc, CLOSED_BY_HEAD):
                    continue  # not a timeout: a slow head is not asked twice
                raise HeadUnreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
            if response.will_close:
                self._drop(connection)
            return HeadAnswer(response.status, body)
        raise AssertionError("unreachable")

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """Return this thread's connection (new: False) and whether it was used before."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self.timeout_s)
        self._local.connection = connection
        with self._lock:
            self._every.append(connection)
        return connection, False

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            if connection in self._every:
                self._every.remove(connection)

    def close(self) -> None:
        """Close every connection (from any thread; a thread's next request opens a new one)."""
        with self._lock:
            every, self._every = self._every, []
        for connection in every:
            connection.close()
