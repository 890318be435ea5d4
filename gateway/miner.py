"""The block miner: pending L1 txs go into a block on an interval and on `/mine`.

Blocks are the store's (heights, hashes and weave offsets live in its index);
this module decides when to mine and derives what the HTTP API shows of blocks
(tx_root, tx_path) from them.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from starlette.concurrency import run_in_threadpool

from gateway.txpath import tx_root_and_paths
from permastore.store import Query

log = logging.getLogger("gateway.miner")

TX_PATH_CACHE_BLOCKS = 256
ANCHOR_DEPTH = 50  # the Arweave node accepts a block hash as last_tx for this many blocks
PENDING_PAGE = 1000


class Miner:
    """Given the store and an interval in seconds (<= 0: only on demand), mine blocks."""

    def __init__(self, store, interval: float):
        self.store = store
        self.interval = interval
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._tip = self._ensure_genesis()
        self._proofs = lru_cache(maxsize=TX_PATH_CACHE_BLOCKS)(self._block_proofs)
        self._anchors: tuple[int, frozenset[str]] = (-1, frozenset())

    def _ensure_genesis(self):
        """Return the newest block, mining block 0 first on a fresh store (tx_anchor needs one)."""
        tip = self.store.current_block()
        return tip if tip is not None else self.store.mine_block()

    def start(self) -> None:
        """Start mining on the interval (no-op when the interval is 0)."""
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.mine(1)
            except Exception:  # a failed block must not stop later ones; the txs stay pending
                log.exception("mining a block failed")

    async def mine(self, count: int) -> None:
        """Mine count blocks now, the first holding every pending tx."""
        async with self._lock:
            for _ in range(count):
                self._tip = await run_in_threadpool(self.store.mine_block)

    def tip(self) -> tuple[int, str]:
        """Return (height, indep_hash) of the newest block."""
        return self._tip.height, self._tip.indep_hash

    def recent_block_hashes(self) -> frozenset[str]:
        """Return the indep_hashes of the newest ANCHOR_DEPTH blocks (recomputed once per new tip)."""
        height, anchors = self._anchors
        tip = self._tip
        if height != tip.height:
            found = (self.store.block(height=h) for h in range(max(0, tip.height - ANCHOR_DEPTH + 1), tip.height + 1))
            anchors = frozenset(block.indep_hash for block in found if block is not None)
            self._anchors = (tip.height, anchors)
        return anchors

    def block_at(self, height: int):
        """Given a height, return that Block or None."""
        if height > self._tip.height:
            return None
        return self.store.block(height=height)

    def block_by_hash(self, indep_hash: str):
        """Given an indep_hash, return that Block or None."""
        return self.store.block(indep_hash=indep_hash)

    def pending_ids(self) -> list[str]:
        """Return the IDs of accepted L1 txs not yet in a block (pending sort first, newest first)."""
        ids: list[str] = []
        after = None
        while True:
            page = self.store.query(Query(first=PENDING_PAGE, after=after, sort="HEIGHT_DESC"))
            for item in page.items:
                if item.height is not None:
                    return ids
                if item.kind == "tx":
                    ids.append(item.id)
            if not page.has_next:
                return ids
            after = page.next_cursor

    def pending_count(self) -> int:
        return len(self.pending_ids())

    def weave_size_before(self, height: int) -> int:
        """Given a height, return the weave size at the end of the block before it."""
        if height == 0:
            return 0
        previous = self.store.block(height=height - 1)
        return previous.weave_size if previous is not None else 0

    def _block_proofs(self, height: int) -> tuple[bytes, dict[str, bytes]]:
        block = self.store.block(height=height)
        txs = []
        for tx_id in block.tx_ids:
            info = self.store.info(tx_id)
            txs.append((info.id, info.data_root, info.data_size, info.weave_offset or 0))
        txs.sort(key=lambda t: t[3])  # weave order
        return tx_root_and_paths([(tx_id, root, size) for tx_id, root, size, _ in txs])

    def tx_root(self, block) -> bytes:
        """Given a Block, return the merkle root over its txs' data_roots."""
        return self._proofs(block.height)[0]

    def tx_path(self, tx_id: str) -> bytes:
        """Given a mined tx's ID, return its tx_path within its block (empty if unknown)."""
        info = self.store.info(tx_id)
        if info is None or info.height is None:
            return b""
        return self._proofs(info.height)[1].get(tx_id, b"")
