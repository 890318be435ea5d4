"""Block status of L1 txs read through an upstream: the upstream's confirmation, cached.

A tx this node fetched through `--upstream` belongs to the upstream's chain. An ar.io
gateway answers `/tx/{id}/status` with the status of the chain it reads from, so a tx the
upstream has confirmed is confirmed here too, with the upstream's block height, hash and
confirmations. Putting it into this node's next block instead would invent an inclusion
the network never made (another height, another block hash) and make a GET write a block.

The answer is cached in gateway.sqlite and asked again at most every REFRESH_S; when the
upstream cannot be reached the cached answer stands.
"""

from __future__ import annotations

import json
import logging
import time

import httpx

from permastore.protocol import b64url

log = logging.getLogger("gateway.chain_status")

REFRESH_S = 60.0  # how stale a cached status may be before the upstream is asked again
STATUS_TIMEOUT_S = 10.0
MAX_STATUS_BYTES = 4096
INDEP_HASH_LENGTH = 64  # 48 bytes, base64url

Confirmation = tuple[int, str, int]  # (block_height, block_indep_hash, number_of_confirmations)


def parse_status(doc: object) -> Confirmation | None:
    """Given a `/tx/{id}/status` JSON answer, return its confirmation, or None when it is not of that shape."""
    if not isinstance(doc, dict):
        return None
    height, indep_hash, confirmations = doc.get("block_height"), doc.get("block_indep_hash"), doc.get("number_of_confirmations")
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        return None
    if not isinstance(confirmations, int) or isinstance(confirmations, bool) or confirmations < 0:
        return None
    if not isinstance(indep_hash, str) or len(indep_hash) != INDEP_HASH_LENGTH:
        return None
    try:
        b64url.decode(indep_hash)
    except ValueError:
        return None
    return height, indep_hash, confirmations


class UpstreamStatus:
    """Given the ledger and upstream URLs, say whether the upstreams have confirmed a read-through tx."""

    def __init__(self, ledger, upstreams: list[str]):
        self.ledger = ledger
        self.upstreams = list(upstreams)
        self.client = httpx.Client(timeout=STATUS_TIMEOUT_S, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def remember(self, tx_id: str) -> None:
        """Given a tx just stored through an upstream, record it as read through and ask for its status."""
        self._refresh(tx_id, cached=None)

    def confirmation(self, tx_id: str) -> Confirmation | None:
        """Given a tx ID, return the upstream's confirmation; None when not read through or not confirmed there."""
        record = self.ledger.upstream_status(tx_id)
        if record is None:
            return None  # posted here, not read through: only this node's blocks count
        cached, checked_at = record
        if time.time() - checked_at < REFRESH_S:
            return cached
        return self._refresh(tx_id, cached)

    def _refresh(self, tx_id: str, cached: Confirmation | None) -> Confirmation | None:
        """Ask the upstreams in order; store and return the first confirmation, else what they said or cached."""
        any_answered = False
        for base_url in self.upstreams:
            answered, confirmed = self._ask(base_url, tx_id)
            if confirmed is not None:
                self.ledger.set_upstream_status(tx_id, confirmed, time.time())
                return confirmed
            any_answered = any_answered or answered
        result = None if any_answered else cached  # upstreams unreachable: the last answer stands
        self.ledger.set_upstream_status(tx_id, result, time.time())  # asked again after REFRESH_S
        return result

    def _ask(self, base_url: str, tx_id: str) -> tuple[bool, Confirmation | None]:
        """Given an upstream, return (whether it answered, its confirmation or None)."""
        try:
            with self.client.stream("GET", f"{base_url}/tx/{tx_id}/status") as response:
                status = response.status_code
                body = b""
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > MAX_STATUS_BYTES:  # a status is ~150 bytes; more is not one
                        return False, None
        except httpx.HTTPError as exc:
            log.info("upstream %s gave no status for %s: %s", base_url, tx_id, exc)
            return False, None
        if status in (202, 404):  # pending there, or unknown: not confirmed
            return True, None
        if status != 200:
            return False, None
        try:
            confirmed = parse_status(json.loads(body))
        except ValueError:
            confirmed = None
        return confirmed is not None, confirmed  # an answer of another shape says nothing
