"""Read-through: an ID missing here is fetched from upstream gateways, verified, stored, then served.

Nothing from an upstream is trusted. An L1 tx's header must carry a valid
signature, and its data must rebuild the signed data_root (the store checks it
while ingesting and keeps nothing otherwise). A data item is rebuilt from the
fields an ar.io GraphQL answer gives (owner, signature, tags, target, anchor)
plus its data, and must verify as a signed ANS-104 item before it is kept.
An upstream that sends wrong bytes is refused; the client gets a 502, never them.

(permastore.sources is meant to hold this; until it does the gateway carries it here.)
"""

from __future__ import annotations

import io
import logging
import struct
import threading

import httpx

from permastore.protocol import b64url
from permastore.protocol.ans104 import SIGNATURE_TYPES
from permastore.protocol.avro_tags import encode_tags
from permastore.protocol.errors import ProtocolError
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, verify
from permastore.store import DataMismatch, StoreError

log = logging.getLogger("gateway.upstream")

TIMEOUT_S = 30.0
MAX_RESUMES = 5  # a transfer cut this many times in a row gives up
ITEM_QUERY = """query($id: ID!) { transaction(id: $id) {
  id signature anchor recipient owner { key } tags { name value } data { size } } }"""


class UpstreamRefused(Exception):
    """Every upstream that had the ID sent something that failed verification (or could not be reached)."""


class _NotThere(Exception):
    """This upstream does not have the ID (or is unreachable): try the next one."""


def signature_type_for(owner: bytes) -> int:
    """Given an item owner's public key, return its ANS-104 signature type (by key length)."""
    for signature_type, kind in SIGNATURE_TYPES.items():
        if kind.owner_size == len(owner):
            return signature_type
    raise ProtocolError(f"no data item signature type has {len(owner)}-byte owners")


def assemble_item_header(signature_type: int, signature: bytes, owner: bytes, target: bytes, anchor: bytes, tags: list[Tag]) -> bytes:
    """Given an item's signed fields, return its binary ANS-104 header (unsigned check: put_item verifies)."""
    raw_tags = encode_tags(tags)
    return b"".join(
        [
            struct.pack("<H", signature_type),
            signature,
            owner,
            b"\x01" + target if target else b"\x00",
            b"\x01" + anchor if anchor else b"\x00",
            struct.pack("<QQ", len(tags), len(raw_tags)),
            raw_tags,
        ]
    )


def item_header_from_graphql(node: object) -> tuple[bytes, int]:
    """Given an ar.io GraphQL `transaction` answer for a data item, return (its binary header, its data size).

    Raises ProtocolError when the answer lacks a field or carries one of the wrong shape.
    """
    try:
        owner = b64url.decode(node["owner"]["key"])
        tags = [Tag(t["name"].encode(), t["value"].encode()) for t in node.get("tags") or []]
        header = assemble_item_header(
            signature_type_for(owner),
            b64url.decode(node["signature"]),
            owner,
            b64url.decode(node.get("recipient") or ""),
            b64url.decode(node.get("anchor") or ""),
            tags,
        )
        size = int(node["data"]["size"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # ProtocolError is a ValueError
        raise ProtocolError(f"upstream GraphQL answer for an item is malformed: {exc!r:.200}") from None
    if size < 0:
        raise ProtocolError("upstream GraphQL answer gives a negative data size")
    return header, size


class ResumingReader(io.RawIOBase):
    """A file-like view of `GET url` that resumes with a Range request when the transfer is cut."""

    def __init__(self, client: httpx.Client, url: str, size: int, prefix: bytes = b""):
        self.client, self.url, self.size = client, url, size
        self.position = 0
        self._buffer = prefix  # bytes handed out before the body (an item's header)
        self._response = None
        self._pieces = None
        self._resumes = 0

    def readable(self) -> bool:
        return True

    def start(self) -> None:
        """Send the (first or resumed) request; raise _NotThere unless it answers with the body."""
        headers = {"Range": f"bytes={self.position}-"} if self.position else {}
        request = self.client.build_request("GET", self.url, headers=headers)
        self._response = self.client.send(request, stream=True)
        expected = 206 if self.position else 200
        if self._response.status_code != expected:
            status = self._response.status_code
            self._response.close()
            raise _NotThere(f"GET {self.url}: HTTP {status}")
        self._pieces = self._response.iter_raw()  # as received, so a cut keeps what came

    def _next_piece(self) -> bytes:
        while True:
            try:
                if self._pieces is None:
                    self.start()
                piece = next(self._pieces, b"")
                self._resumes = 0
                return piece
            except (httpx.TransportError, httpx.StreamError) as exc:
                self._resumes += 1
                self.close_response()
                if self._resumes > MAX_RESUMES:
                    raise _NotThere(f"GET {self.url} kept failing: {exc}") from None
                log.info("upstream transfer of %s cut at %d, resuming", self.url, self.position)

    def read(self, n: int = -1) -> bytes:
        if self._buffer:
            out, self._buffer = (self._buffer, b"") if n < 0 or n >= len(self._buffer) else (self._buffer[:n], self._buffer[n:])
            return out
        if self.position >= self.size:
            return b""
        piece = self._next_piece()
        if not piece:
            return b""
        piece = piece[: self.size - self.position]  # never more than the signed size
        self.position += len(piece)
        if 0 <= n < len(piece):
            piece, self._buffer = piece[:n], piece[n:]
        return piece

    def close_response(self) -> None:
        if self._response is not None:
            self._response.close()
        self._response, self._pieces = None, None


class Upstream:
    """Given the store and upstream base URLs, fetch missing IDs through them, verified."""

    def __init__(self, store, urls: list[str], timeout: float = TIMEOUT_S):
        self.store = store
        self.urls = list(urls)
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def fetch(self, object_id: str):
        """Given an ID, return its ObjectInfo once fetched, verified and stored; None if no upstream has it.

        Raises UpstreamRefused when an upstream had it but sent what does not verify.
        """
        with self._lock_for(object_id):  # one download per ID, however many clients ask
            info = self.store.info(object_id)
            if info is not None:
                return info
            refusals = []
            for url in self.urls:
                try:
                    return self._fetch_from(url, object_id)
                except _NotThere as exc:
                    log.debug("upstream %s: %s", url, exc)
                except (ProtocolError, DataMismatch, StoreError) as exc:
                    # security: wrong bytes or a forged header from this upstream; keep nothing from it
                    log.warning("upstream %s sent %s failing verification: %s", url, object_id, exc)
                    refusals.append(f"{url}: {exc}")
            if refusals:
                raise UpstreamRefused("; ".join(refusals))
            return None

    def _lock_for(self, object_id: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10_000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(object_id, threading.Lock())

    def _get(self, url: str, **kwargs) -> httpx.Response:
        try:
            return self.client.get(url, **kwargs)
        except httpx.HTTPError as exc:
            raise _NotThere(f"GET {url}: {exc}") from None

    def _fetch_from(self, base: str, object_id: str):
        response = self._get(f"{base}/tx/{object_id}")
        if response.status_code == 200:
            return self._fetch_tx(base, object_id, response)
        return self._fetch_item(base, object_id)

    def _fetch_tx(self, base: str, object_id: str, response: httpx.Response):
        try:
            doc = response.json()
        except ValueError:
            raise _NotThere(f"{base}/tx/{object_id} is not JSON") from None
        tx = Transaction.from_json(doc)
        verify(tx)  # security: the header is signed by its owner and its ID is the signature's
        if tx.id != object_id:
            raise ProtocolError(f"upstream answered /tx/{object_id} with tx {tx.id}")
        if tx.format == 1 or tx.data_size == 0:
            return self.store.put_tx(tx, tx.data)
        reader = self._data_reader(base, object_id, tx.data_size)
        try:
            return self.store.put_tx(tx, reader)  # the store rebuilds data_root before keeping a byte
        finally:
            reader.close_response()

    def _fetch_item(self, base: str, object_id: str):
        try:
            response = self.client.post(f"{base}/graphql", json={"query": ITEM_QUERY, "variables": {"id": object_id}})
            node = (response.json().get("data") or {}).get("transaction")
        except (httpx.HTTPError, ValueError, AttributeError):
            raise _NotThere(f"{base}/graphql has no item {object_id}") from None
        if not node:
            raise _NotThere(f"{base} does not know {object_id}")
        header, size = item_header_from_graphql(node)
        reader = self._data_reader(base, object_id, size, prefix=header)
        try:
            info = self.store.put_item(reader)  # security: verifies the signature over header + data
        finally:
            reader.close_response()
        if info.id != object_id:
            raise ProtocolError(f"upstream fields for {object_id} rebuild item {info.id}")
        return info

    def _data_reader(self, base: str, object_id: str, size: int, prefix: bytes = b"") -> ResumingReader:
        """Return a reader of the ID's raw data: /raw/{id} (no manifest resolution) where served, else /{id}."""
        for path in (f"/raw/{object_id}", f"/{object_id}"):
            reader = ResumingReader(self.client, base + path, size, prefix)
            try:
                reader.start()
            except _NotThere:
                continue
            return reader
        raise _NotThere(f"{base} serves no data for {object_id}")
