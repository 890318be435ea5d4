"""`permastore info` and `permastore query`: what the store holds, read only."""

from __future__ import annotations

import json
import sys

from permastore.cli.errors import CliError
from permastore.cli.helpers import parse_id, parse_tag, user_errors
from permastore.cli.stores import READ, opened_store

PAGE_SIZE = 100


def add_parsers(subparsers) -> None:
    info = subparsers.add_parser("info", help="print what the store knows about an ID, as JSON")
    info.add_argument("id", metavar="ID")
    info.set_defaults(handler=cmd_info, needs_store=READ)

    query = subparsers.add_parser(
        "query",
        help="print stored IDs, newest first, one a line (filtered by tags and owners)",
        description="Print the IDs of stored objects, newest first (pending ones before mined ones). "
        "With no --tag or --owner: every object. --limit N stops after N and prints, on stderr, "
        "the --after CURSOR that continues the listing.",
    )
    query.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE", help="tag to match (repeatable)")
    query.add_argument("--owner", action="append", default=[], metavar="ADDR", help="owner address (repeatable)")
    query.add_argument("--limit", type=int, default=None, metavar="N", help="print at most N IDs")
    query.add_argument("--after", metavar="CURSOR", help="continue after the listing that printed this cursor")
    query.add_argument("--oldest-first", action="store_true", help="oldest first instead")
    query.add_argument("-l", "--long", action="store_true",
                       help="ID, size, Content-Type and block height (or 'pending'), tab-separated")
    query.set_defaults(handler=cmd_query, needs_store=READ)


def info_json(info) -> dict:
    """Given an ObjectInfo, return it as JSON-ready values (binary fields base64url)."""
    from permastore.protocol import b64url

    return {
        "id": info.id,
        "kind": info.kind,
        "format": info.format,
        "signature_type": info.signature_type,
        "owner": b64url.encode(info.owner),
        "owner_address": info.owner_address,
        "target": info.target,
        "anchor": info.anchor,
        "tags": [
            {"name": t.name.decode("utf-8", "replace"), "value": t.value.decode("utf-8", "replace")} for t in info.tags
        ],
        "data_size": info.data_size,
        "data_root": b64url.encode(info.data_root),
        "content_type": info.content_type,
        "quantity": info.quantity,
        "reward": info.reward,
        "signature": b64url.encode(info.signature),
        "bundled_in": info.bundled_in,
        "height": info.height,
        "block_hash": info.block_hash,
        "weave_offset": info.weave_offset,
        "data_complete": info.data_complete,
        "created_at": info.created_at,
    }


def cmd_info(args) -> int:
    object_id = parse_id(args.id)
    with opened_store(args.data, READ) as store, user_errors():
        info = store.info(object_id)
        partial = store.partial_info(object_id)
        refused = store.refusals(object_id) if info is None and partial is None else []
    if refused:
        bundle_id, _, reason = refused[-1]
        raise CliError(f"{object_id} not found: refused from bundle {bundle_id}: {reason}")
    if info is None and partial is None:
        raise CliError(f"{object_id} not found")
    doc = info_json(info) if info is not None else {"id": object_id, "kind": partial.kind, "data_size": partial.data_size}
    if partial is not None:  # being fetched from peers: how much of it is here
        doc["held"] = {"bytes": partial.held_bytes, "of": partial.data_size, "ranges": partial.ranges,
                       "proof": partial.proof, "percent": round(100 * partial.held_bytes / partial.data_size, 1)}
    print(json.dumps(doc, indent=2))
    return 0


def cmd_query(args) -> int:
    from permastore.store import Query

    grouped: dict[bytes, list[bytes]] = {}
    for text in args.tag:
        tag = parse_tag(text)
        grouped.setdefault(tag.name, []).append(tag.value)  # same name: any of the values
    if args.limit is not None and args.limit < 0:
        raise CliError("--limit must not be negative")
    query = Query(tags=list(grouped.items()), owners=args.owner, after=args.after,
                  sort="HEIGHT_ASC" if args.oldest_first else "HEIGHT_DESC")  # fmt: skip
    printed = 0
    with opened_store(args.data, READ) as store, user_errors():
        while args.limit is None or printed < args.limit:
            # A page never passes the limit, so its cursor is exactly where the listing stopped.
            query.first = PAGE_SIZE if args.limit is None else min(PAGE_SIZE, args.limit - printed)
            page = store.query(query)
            for info in page.items:
                print(_line(info) if args.long else info.id)
            printed += len(page.items)
            if not page.has_next:
                return 0
            query.after = page.next_cursor
    if query.after:
        print(f"more: --after {query.after}", file=sys.stderr)
    return 0


def _line(info) -> str:
    height = "pending" if info.height is None else str(info.height)
    return f"{info.id}\t{info.data_size}\t{info.content_type or '-'}\t{height}"
