"""UpstreamSource: another node, arlocal, or any Arweave / ar.io gateway, over HTTP.

What it returns is NOT verified: use it inside ReadThroughSource, which checks every
byte against the signed header before storing or serving it. It offers:

- ``get(id, start, end)``: the data bytes, by HTTP ranges (``/raw/{id}``, else ``/{id}``),
  resuming from the last byte received when a connection drops;
- ``tx_header(id)``: the signed L1 header (``/tx/{id}``, else ``/unconfirmed_tx/{id}``
  while the tx is pending);
- ``item_header(id)``: the signed binary ANS-104 header of a data item
  (``/item/{id}/header`` on permastore nodes);
- ``parent_of(id)``: the bundle that holds a data item (GraphQL ``bundledIn``), so the
  item can be verified by fetching and unbundling its parent, as ar.io gateways do.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import httpx

from permastore.protocol import ans104, b64url
from permastore.protocol.avro_tags import encode_tags
from permastore.protocol.errors import ProtocolError
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction
from permastore.sources.base import DataStream, UpstreamError
from permastore.sources.limits import FetchLimits, TransferWatch
from permastore.store.errors import NotFound

PIECE_SIZE = 1024 * 1024
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_HEADER_BYTES = 1024 * 1024  # an ANS-104 header is far smaller; refuse anything bigger
MAX_TX_JSON_BYTES = 16 * 1024 * 1024  # format-1 txs carry data inline (up to ~10 MiB)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

PARENT_QUERY = "query($id: ID!) { transaction(id: $id) { id bundledIn { id } } }"
FIELDS_QUERY = (
    "query($id: ID!) { transaction(id: $id) { id signature anchor recipient owner { key } tags { name value } } }"
)


class _EndedEarly(Exception):
    pass


def make_client(limits: FetchLimits, connections: int = 32, tls: bool = True) -> httpx.Client:
    """Given FetchLimits, return an httpx client whose single reads and connects are bounded by them.

    With tls=False the client is for http:// URLs only: it refuses https:// ones rather than
    connect unverified, and skips loading the CA store (~50 ms, paid by every `pull`)."""
    timeout = httpx.Timeout(limits.read_timeout_s, connect=limits.connect_timeout_s, pool=limits.read_timeout_s)
    pool = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    if tls:
        return httpx.Client(timeout=timeout, limits=pool, follow_redirects=False)
    return httpx.Client(timeout=timeout, follow_redirects=False, transport=_PlainHttpTransport(verify=False, limits=pool))


class _PlainHttpTransport(httpx.HTTPTransport):
    """An http:// transport that refuses every other scheme."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # Security: built with verify=False (no CA store), so it must never carry TLS.
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"{request.url.scheme}:// needs a verifying client")
        return super().handle_request(request)


@dataclass(frozen=True)
class SmallAnswer:
    """A small answer read whole: its status and body (httpx's own Response is never patched)."""

    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


class UpstreamSource:
    """Given a base URL (http:// or https://), fetch headers and data from it.

    Every transfer is policed by ``limits`` (FetchLimits): a deadline, a minimum rate and
    a maximum size, so a stranger's endless or dripping answer is cut off.
    """

    def __init__(self, base_url: str, client: httpx.Client | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, limits: FetchLimits | None = None):  # fmt: skip
        if not re.match(r"https?://", base_url or ""):
            raise ValueError(f"upstream must be an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.limits = limits or FetchLimits(read_timeout_s=min(timeout, FetchLimits.read_timeout_s))
        self.client = client or make_client(self.limits)
        self.retries = retries

    def __repr__(self) -> str:
        return f"UpstreamSource({self.base_url!r})"

    # -- headers -------------------------------------------------------------------------

    def small_watch(self, path: str) -> TransferWatch:
        """Return the watch of one small document (header deadline, minimum rate)."""
        limits = self.limits
        return TransferWatch.for_limits(f"{self.base_url}{path}", limits, time.monotonic() + limits.header_deadline_s)

    def _get_small(self, path: str, limit: int) -> SmallAnswer | None:
        """GET a small document, read whole under a watch and a size limit; None on 404/400/410 (the
        upstream does not have it)."""
        watch = self.small_watch(path)
        try:
            with self.client.stream("GET", self.base_url + path) as response:
                if response.status_code in (400, 404, 410):
                    return None
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    watch.update(len(piece))
                    if len(body) > limit:
                        raise UpstreamError(f"{self.base_url}{path}: answer larger than {limit} bytes")
                return SmallAnswer(response.status_code, bytes(body), {k.lower(): v for k, v in response.headers.items()})
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.base_url}{path}: {exc}") from None

    def post_small(self, path: str, doc: dict, limit: int = MAX_TX_JSON_BYTES):
        """POST JSON, return the decoded JSON answer of a 200 (None otherwise), read under a small watch."""
        watch = self.small_watch(path)
        with self.client.stream("POST", self.base_url + path, json=doc) as response:
            if response.status_code != 200:
                return None
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                watch.update(len(piece))
                if len(body) > limit:
                    raise UpstreamError(f"{self.base_url}{path}: answer larger than {limit} bytes")
        return json.loads(bytes(body))

    def tx_header(self, id: str) -> Transaction | None:
        """Given an ID, return the upstream's L1 tx header (unverified), or None when it has none."""
        b64url.parse_id(id)
        for path in (f"/tx/{id}", f"/unconfirmed_tx/{id}"):
            response = self._get_small(path, MAX_TX_JSON_BYTES)
            if response is None or response.status_code == 202:  # 202: pending, header not shown
                continue
            if response.status_code != 200:
                raise UpstreamError(f"{self.base_url}{path}: HTTP {response.status_code}")
            try:
                tx = Transaction.from_json(json.loads(response.content))
            except (ValueError, ProtocolError) as exc:
                raise UpstreamError(f"{self.base_url}{path}: not a transaction header: {exc}") from None
            return tx
        return None

    def item_header(self, id: str) -> bytes | None:
        """Given an ID, return the signed binary ANS-104 header the upstream holds (unverified), or None."""
        b64url.parse_id(id)
        response = self._get_small(f"/item/{id}/header", MAX_HEADER_BYTES)
        if response is None or response.status_code != 200:
            return None
        return response.content

    def parent_of(self, id: str) -> str | None:
        """Given a data item ID, return the ID of the bundle holding it per the upstream's GraphQL, or None."""
        b64url.parse_id(id)
        try:
            body = self.post_small("/graphql", {"query": PARENT_QUERY, "variables": {"id": id}}) or {}
        except (httpx.HTTPError, ValueError, UpstreamError):
            return None  # no GraphQL there: this route to the item is closed, not an error
        try:
            found = ((body or {}).get("data") or {}).get("transaction") or {}
            parent = (found.get("bundledIn") or {}).get("id")
        except AttributeError:  # an answer of another shape (a string, bundledIn not an object)
            return None
        return parent if isinstance(parent, str) and b64url.is_id(parent) else None

    def item_header_from_fields(self, id: str) -> bytes | None:
        """Given a data item ID, rebuild its binary header from the upstream's GraphQL fields (unverified).

        For upstreams that index items but serve neither their header nor their bundle
        (arlocal: bundledIn is null). The rebuilt header only verifies if the tags were
        Avro-encoded the usual way when signed; otherwise the signature check refuses it.
        """
        b64url.parse_id(id)
        try:
            answer = self.post_small("/graphql", {"query": FIELDS_QUERY, "variables": {"id": id}})
            found = answer["data"]["transaction"] if answer is not None else None
            if not found:
                return None
            owner = b64url.decode(found["owner"]["key"])
            tags = [Tag(t["name"].encode(), t["value"].encode()) for t in found.get("tags") or []]
            return _assemble_item_header(
                owner, b64url.decode(found["signature"]), b64url.decode(found.get("recipient") or ""),
                b64url.decode(found.get("anchor") or ""), tags,
            )  # fmt: skip
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError, UpstreamError):
            return None  # no usable answer: this route to the item is closed, not an error

    # -- data ----------------------------------------------------------------------------

    def get(self, id: str, start: int = 0, end: int | None = None) -> DataStream:
        """Given an ID and a range, return a stream of the upstream's (unverified) bytes.

        Reading stops at the declared length (``end``, else the answer's total size); an
        answer declaring more than ``limits.max_data_size``, or running past it, is refused.
        """
        b64url.parse_id(id)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range start={start} end={end}")
        watch = TransferWatch.for_limits(f"{self.base_url}/raw/{id}", self.limits)
        path, response = self._open_data(id, start, end)
        total = _total_size(response, start)
        try:
            self.limits.check_size(f"{self.base_url}{path}", total)
        except UpstreamError:
            response.close()
            raise
        stop = total if end is None else (end if total is None else min(end, total))
        size = None if stop is None else stop - start
        content_type = response.headers.get("content-type")
        pieces = self._pieces(path, response, start, stop, watch)
        return DataStream(id, pieces, size, content_type, total_size=total, verified=False)

    def _open_data(self, id: str, start: int, end: int | None):
        """Open the first data URL that has the object; return (path, open response)."""
        for path in (f"/raw/{id}", f"/{id}"):
            response = self._request(path, start, end)
            if response.status_code in (200, 206):
                return path, response
            response.close()
            if response.status_code not in (400, 404):
                raise UpstreamError(f"{self.base_url}{path}: HTTP {response.status_code}")
        raise NotFound(id, f"upstream {self.base_url}: object")

    def _request(self, path: str, start: int, end: int | None) -> httpx.Response:
        headers = {"Accept-Encoding": "identity"}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        request = self.client.build_request("GET", self.base_url + path, headers=headers)
        try:
            return self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.base_url}{path}: {exc}") from None

    def _pieces(self, path: str, response: httpx.Response, offset: int, stop: int | None, watch: TransferWatch):
        """Yield the bytes [offset, stop), reopening the range after a dropped connection."""
        failures = 0
        limit = self.limits.max_data_size
        try:
            while True:
                # A server that ignored our Range sends from byte 0: skip up to where we are.
                skip = offset if response.status_code == 200 else 0
                try:
                    for piece in response.iter_raw():  # as it arrives: the watch sees every read
                        if skip:
                            cut = min(skip, len(piece))
                            piece, skip = piece[cut:], skip - cut
                        if stop is not None:
                            piece = piece[: max(stop - offset, 0)]
                        watch.update(len(piece))
                        if piece:
                            if stop is None and offset + len(piece) > limit:
                                raise UpstreamError(f"{self.base_url}{path}: more than {limit} bytes")
                            yield piece
                            offset += len(piece)
                        if stop is not None and offset >= stop:
                            return
                    if stop is None or offset >= stop:
                        return
                    raise _EndedEarly(f"connection ended at byte {offset} of {stop}")
                except (httpx.HTTPError, _EndedEarly) as exc:
                    response.close()
                    failures += 1
                    if failures > self.retries:
                        raise UpstreamError(
                            f"{self.base_url}{path}: gave up after {failures} broken transfers: {exc}"
                        ) from None
                    response = self._request(path, offset, stop)
                    if response.status_code not in (200, 206):
                        raise UpstreamError(f"{self.base_url}{path}: resume answered HTTP {response.status_code}")
        finally:
            response.close()


def _assemble_item_header(owner: bytes, signature: bytes, target: bytes, anchor: bytes, tags: list) -> bytes:
    """Given an item's signed fields, return its binary ANS-104 header (the signature type follows the owner size)."""
    kinds = [t for t, kind in ans104.SIGNATURE_TYPES.items() if kind.owner_size == len(owner)]
    if not kinds:
        raise ValueError(f"no data item signature type has {len(owner)}-byte owners")
    raw_tags = encode_tags(tags)
    return ans104.assemble_header(kinds[0], signature, owner, target or None, anchor or None, len(tags), raw_tags)


def _total_size(response: httpx.Response, start: int) -> int | None:
    """The whole object's size from Content-Range (206) or Content-Length (200)."""
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match and match.group(3) != "*":
            return int(match.group(3))
        return None
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None
