"""Accepting uploads: signed L1 transactions and signed ANS-104 data items.

Nothing is stored before its signature verifies; the store checks data against
data_root (txs) or the signed deep-hash (items) before it acknowledges.
"""

from __future__ import annotations

import tempfile

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from gateway.bodies import declared_length, limited_stream
from gateway.errors import ApiError, bad_request
from gateway.ledger import InsufficientFunds
from gateway.miner import ANCHOR_DEPTH
from gateway.node import Node
from gateway.uploads import ItemHeaderCheck, upload_refused
from permastore.protocol import b64url
from permastore.protocol.errors import ProtocolError
from permastore.protocol.tx import Transaction, verify

SPOOL_IN_MEMORY = 8 * 1024 * 1024  # item bodies past this go to a temp file in the data folder


def accept_tx(node: Node, doc: dict) -> int:
    """Given a POST /tx JSON body, verify and store the tx; return 200, or 208 if already stored."""
    try:
        tx = Transaction.from_json(doc)  # MalformedData -> 400
    except ProtocolError:
        raise
    except (ValueError, OverflowError) as exc:  # e.g. a 5,000-digit decimal, past int()'s digit limit
        raise bad_request(f"invalid transaction: {exc}"[:300]) from None
    if not tx.id or not tx.signature:
        raise bad_request("transaction is not signed")
    verify(tx)  # security: signature and id == sha256(signature) before anything is kept
    check_anchor(node, tx)
    with node.accept_lock:  # one funds check + store + debit at a time
        if node.store.info(tx.id) is not None:
            node.store.check_known_tx(tx)  # a known ID proves nothing: a different copy is refused (400)
            return 208
        target = b64url.encode(tx.target)
        try:
            node.ledger.check_funds(tx.owner_address, target, tx.quantity, tx.reward)
        except InsufficientFunds as exc:
            raise ApiError(400, f"overspend: {exc}") from None
        data = tx.data if tx.data or tx.data_size == 0 else None  # None: chunks follow via POST /chunk
        node.store.put_tx(tx, data)
        node.ledger.apply_tx(tx.owner_address, tx.id, target, tx.quantity, tx.reward)
    return 200


def check_anchor(node: Node, tx: Transaction) -> None:
    """Given a verified tx, raise 400 unless its last_tx is a recent block hash or its wallet's last tx.

    As the Arweave node: the anchor bounds how long a signed tx may be replayed. An empty
    anchor is let through on this development node, as arlocal does, so scripts need no
    /tx_anchor round trip.
    """
    if not tx.last_tx:
        return
    anchor = b64url.encode(tx.last_tx)
    if anchor in node.miner.recent_block_hashes() or anchor == node.ledger.last_tx(tx.owner_address):
        return
    raise ApiError(
        400,
        f"invalid anchor: last_tx {anchor:.64} is neither one of the last {ANCHOR_DEPTH} block hashes "
        "(GET /tx_anchor) nor the wallet's last tx",
    )


async def accept_item(request: Request, node: Node):
    """Given a request whose body is a signed ANS-104 data item, verify, store and return its ObjectInfo.

    The header is checked while the body arrives (a body that is not an item is refused
    after the few bytes that show it); only then is the rest spooled, within the node's
    upload bounds (gateway.uploads).
    """
    declared = declared_length(request, node.config.max_item_body)
    spool_dir = node.config.data_dir / "tmp"
    spool_dir.mkdir(exist_ok=True)
    with request.app.state.uploads.admitted(declared) as reservation:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=str(spool_dir)) as spool:
            await _spool_item(request, node, spool, reservation)
            spool.seek(0)
            return await run_in_threadpool(node.store.put_item, spool)


async def _spool_item(request: Request, node: Node, spool, reservation) -> None:
    """Given an admitted upload, copy its body into the spool, refusing it once its header shows it is no item."""
    check = ItemHeaderCheck()
    size = 0
    try:
        async for piece in limited_stream(request, node.config.max_item_body):
            check.feed(piece)  # security: MalformedData / LimitExceeded before the rest is taken in
            size += len(piece)
            reservation.grow_to(size)  # a body longer than its Content-Length (or chunked) still counts
            if size > SPOOL_IN_MEMORY:  # going to disk: keep the event loop free while writing
                await run_in_threadpool(spool.write, piece)
            else:
                spool.write(piece)
        if size == 0:
            raise bad_request("empty body: expected a signed ANS-104 data item")
        check.finish()
    except ProtocolError as exc:
        raise upload_refused(400, str(exc)) from None
