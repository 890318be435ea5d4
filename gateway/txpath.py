"""tx_path: the proof that a tx's data_root sits at its offsets inside a block's tx_root.

Same merkle construction as data_path, with one leaf per tx that carries data:
the leaf's "data hash" is the tx's data_root and its range is the tx's data
within the block (offsets from the block's start in the weave).
"""

from __future__ import annotations

from permastore.protocol import merkle


def tx_leaves(txs: list[tuple[str, bytes, int]]) -> tuple[list[str], list[merkle.Chunk]]:
    """Given a block's txs as (id, data_root, data_size) in weave order, return their IDs and leaves."""
    ids, leaves, start = [], [], 0
    for tx_id, data_root, data_size in txs:
        if data_size <= 0:
            continue  # txs without data take no room in the weave and have no leaf
        ids.append(tx_id)
        leaves.append(merkle.Chunk(data_root, start, start + data_size))
        start += data_size
    return ids, leaves


def tx_root_and_paths(txs: list[tuple[str, bytes, int]]) -> tuple[bytes, dict[str, bytes]]:
    """Given a block's txs as (id, data_root, data_size) in weave order, return tx_root and each tx's tx_path."""
    ids, leaves = tx_leaves(txs)
    proofs = merkle.build_proofs(leaves)
    return merkle.compute_root(leaves), {tx_id: proof.proof for tx_id, proof in zip(ids, proofs)}
