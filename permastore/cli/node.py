"""`permastore init`, `address` and `fsck`: the data folder itself."""

from __future__ import annotations

import sys

from permastore.cli.errors import CliError
from permastore.cli.helpers import user_errors
from permastore.cli.stores import READ, WRITE, opened_store, read_wallet_address, store_exists


def add_parsers(subparsers) -> None:
    init = subparsers.add_parser(
        "init",
        help="create the data folder and node wallet (if missing); print the node's address",
        description="Create the store in the data folder, with a new node wallet, unless it is there; "
        "print the wallet's address. Any writing command or `serve` does the same on first use.",
    )
    init.set_defaults(handler=cmd_init, needs_store=WRITE)

    address = subparsers.add_parser(
        "address",
        help="print the node wallet's address",
        description="Print the address of the node wallet (DIR/wallet.json). Reads only: on a folder "
        "without a wallet it fails, so a mistyped --data never shows a new address; `init` makes one.",
    )
    address.set_defaults(handler=cmd_address)

    fsck = subparsers.add_parser("fsck", help="verify every stored chunk; non-zero exit on any failure")
    fsck.add_argument("--repair", action="store_true", help="with a bucket: rewrite bad or missing bucket objects (from local copies, then --peer)")
    fsck.add_argument("--peer", action="append", default=[], metavar="URL", help="with --repair: a node to repair from (repeatable)")
    fsck.set_defaults(handler=cmd_fsck, needs_store=READ)


def cmd_init(args) -> int:
    from permastore.protocol.wallet import address_of

    existed = store_exists(args.data)
    with opened_store(args.data, WRITE) as store:
        address = address_of(store.signer.owner)
    print(address)
    print(f"{'store already at' if existed else 'new store at'} {args.data}", file=sys.stderr)
    return 0


def cmd_address(args) -> int:
    print(read_wallet_address(args.data))
    return 0


def cmd_fsck(args) -> int:
    if args.peer and not args.repair:  # asking peers is repairing: a check alone would silently ignore them
        raise CliError("fsck --peer is where --repair repairs from: add --repair (or drop --peer)", exit_code=2)
    with opened_store(args.data, READ) as store, user_errors():
        fetcher = repair_peers(store, args) if args.repair else None  # bucket repair (store/bucket/repair.py)
        try:
            report = store.fsck()
        finally:
            if fetcher is not None:
                fetcher.close()
    for object_id, chunk_index, how in store.bucket.repaired if store.bucket is not None else ():
        print(f"{object_id} {'object' if chunk_index < 0 else f'chunk {chunk_index}'}: repaired ({how})")
    for bundle_id, item_id, reason in report.refused:
        print(f"{item_id} refused from bundle {bundle_id}: {reason}")
    if report.refused_total > len(report.refused):
        print(f"... and {report.refused_total - len(report.refused)} more refused bundle item(s)")
    if report.ok:
        refused = f" ({report.refused_total} bundle item(s) refused, not indexed)" if report.refused_total else ""
        partial = f", {report.partial_objects} partially held" if report.partial_objects else ""
        print(f"ok: {report.objects_checked} objects, {report.chunks_checked} chunks verified{partial}{refused}")
        return 0
    for object_id, chunk_index, reason in report.failures:
        where = "object" if chunk_index < 0 else f"chunk {chunk_index}"
        print(f"{object_id} {where}: {reason}")
    raise CliError(f"fsck found {len(report.failures)} failure(s)")


def repair_peers(store, args):
    """Given the store and fsck's options, give its bucket the --peer nodes to repair from; return the Fetcher."""
    if store.bucket is None:
        raise CliError("fsck --repair repairs bucket objects: give the bucket (--s3-bucket)")
    if not args.peer:
        store.bucket.repair_from(list)  # from this folder's own copies only
        return None
    from permastore.sources.engine import Fetcher

    fetcher = Fetcher(store, [url.rstrip("/") for url in args.peer])
    store.bucket.repair_from(fetcher.peers.clients)
    return fetcher
