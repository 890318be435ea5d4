"""Core subcommands: put, get, info, query, fsck.

Each handler turns bad input and store failures into a one-line CliError; the
output of `get` reaches its file only once every chunk has verified.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import stat
import sys
from contextlib import contextmanager
from pathlib import Path

from permastore.cli.errors import CliError

# How many bytes to look at to tell a JSON tx from a binary item (--raw).
SNIFF_BYTES = 64
# One ID in 64 starts with '-'; argparse would take it for an option.
ID_LOOKS_LIKE_OPTION = re.compile(r"^-[A-Za-z0-9_-]{42}$")


def accept_dash_ids(parser) -> None:
    """Let a positional ID start with '-' (argparse's negative-number rule, pointed at IDs)."""
    parser._negative_number_matcher = ID_LOOKS_LIKE_OPTION


def register(subparsers) -> None:
    """Given the top-level subparsers, add put, get, info, query and fsck."""
    put = subparsers.add_parser("put", help="store a file; print its ID")
    put.add_argument("file", metavar="FILE", help="file to store, or - for standard input")
    put.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE", help="add a tag (repeatable)")
    put.add_argument("--content-type", metavar="TYPE", help="Content-Type tag (guessed from the name otherwise)")
    put.add_argument(
        "--raw", action="store_true", help="FILE is a signed binary ANS-104 item or signed tx JSON: keep its own ID"
    )
    put.set_defaults(handler=cmd_put)

    get = subparsers.add_parser("get", help="write an object's data to stdout or a file")
    get.add_argument("id", metavar="ID")
    get.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    get.set_defaults(handler=cmd_get)
    accept_dash_ids(get)

    info = subparsers.add_parser("info", help="print what the store knows about an ID, as JSON")
    info.add_argument("id", metavar="ID")
    info.set_defaults(handler=cmd_info)
    accept_dash_ids(info)

    query = subparsers.add_parser("query", help="print the IDs matching tags and owners, one a line")
    query.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE", help="tag to match (repeatable)")
    query.add_argument("--owner", action="append", default=[], metavar="ADDR", help="owner address (repeatable)")
    query.add_argument("--limit", type=int, default=None, metavar="N", help="print at most N IDs")
    query.set_defaults(handler=cmd_query)

    fsck = subparsers.add_parser("fsck", help="verify every stored chunk; non-zero exit on any failure")
    fsck.set_defaults(handler=cmd_fsck)


# -- helpers -------------------------------------------------------------------------


@contextmanager
def opened_store(args):
    """Open the store in --data, turning any failure into a one-line error."""
    from permastore.store import Store, StoreError

    try:
        store = Store.open(args.data)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot open data folder {args.data}: {exc}") from None
    try:
        yield store
    finally:
        store.close()


@contextmanager
def user_errors():
    """Report protocol and store errors as one line, without a traceback."""
    from permastore.store import StoreError

    try:
        yield
    except (StoreError, ValueError) as exc:  # ProtocolError is a ValueError
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or 'I/O error'}: {exc.strerror or exc}") from None


def parse_tag(text: str):
    """Given NAME=VALUE, return the Tag; the value may contain '='."""
    from permastore.protocol.tags import Tag

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CliError(f"tag must be NAME=VALUE, got {text!r}")
    return Tag(name.encode("utf-8"), value.encode("utf-8"))


def parse_id(text: str) -> str:
    from permastore.protocol import b64url
    from permastore.protocol.errors import InvalidId

    try:
        b64url.parse_id(text)
    except InvalidId as exc:
        raise CliError(str(exc)) from None
    return text


def progress_bar(total: int | None, description: str):
    """Return a tqdm bar on a terminal (stderr), None when piped."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, file=sys.stderr)


def open_input(name: str):
    """Given FILE or '-', return (binary stream, size or None, path or None)."""
    if name == "-":
        return sys.stdin.buffer, None, None
    try:
        stream = open(name, "rb")
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}") from None
    st = os.fstat(stream.fileno())
    if not stat.S_ISREG(st.st_mode):
        stream.close()
        raise CliError(f"cannot read {name}: not a regular file")
    return stream, st.st_size, name


# -- put -------------------------------------------------------------------------------


def cmd_put(args) -> int:
    tags = [parse_tag(text) for text in args.tag]
    if args.raw and (tags or args.content_type):
        raise CliError("--raw stores a signed item or tx as it is: --tag and --content-type cannot change it")
    stream, size, path = open_input(args.file)
    content_type = args.content_type
    if content_type is None and path is not None and not args.raw:
        content_type = mimetypes.guess_type(path)[0]
    bar = progress_bar(size, "put")
    try:
        with opened_store(args) as store, user_errors():
            update = bar.update if bar else None
            if args.raw:
                info = put_raw(store, stream, update)
            else:
                info = store.put_data(stream, tags=tags, content_type=content_type, progress=update)
    finally:
        if bar:
            bar.close()
        if path is not None:
            stream.close()
    print(info.id)
    return 0


def put_raw(store, stream, progress):
    """Given a stream of a signed item or signed tx JSON, store it under its own ID."""
    from permastore.protocol.tx import Transaction
    from permastore.store.ingest import PrefixedStream

    head = stream.read(SNIFF_BYTES)
    if head.lstrip()[:1] == b"{":
        text = head + stream.read()
        try:
            body = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(f"--raw input looks like JSON but is not valid: {exc}") from None
        return store.put_tx(Transaction.from_json(body))
    return store.put_item(PrefixedStream(head, stream), progress=progress)


# -- get -------------------------------------------------------------------------------


def cmd_get(args) -> int:
    object_id = parse_id(args.id)
    with opened_store(args) as store, user_errors():
        info = store.info(object_id)
        if info is None:
            raise CliError(f"{object_id} not found")
        bar = progress_bar(info.data_size, "get")
        try:
            if args.output:
                write_file(store, object_id, Path(args.output), bar)
            else:
                write_stdout(store, object_id, bar)
        finally:
            if bar:
                bar.close()
    return 0


def write_file(store, object_id: str, target: Path, bar) -> None:
    """Write the verified data to a temporary file beside target, then rename it into place."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        store.copy_to(object_id, fd, progress=bar.update if bar else None)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)  # a failed get leaves no partial file behind
        raise
    os.close(fd)
    os.replace(tmp, target)


def write_stdout(store, object_id: str, bar) -> None:
    out = sys.stdout.buffer
    for piece in store.read(object_id):
        out.write(piece)
        if bar:
            bar.update(len(piece))
    out.flush()


# -- info, query, fsck -------------------------------------------------------------------


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
    with opened_store(args) as store, user_errors():
        info = store.info(object_id)
        partial = store.partial_info(object_id)
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
    if not grouped and not args.owner:
        raise CliError("query needs at least one --tag or --owner")
    if args.limit is not None and args.limit < 0:
        raise CliError("--limit must not be negative")
    query = Query(tags=list(grouped.items()), owners=args.owner, first=100)
    printed = 0
    with opened_store(args) as store, user_errors():
        while args.limit is None or printed < args.limit:
            page = store.query(query)
            for info in page.items[: None if args.limit is None else args.limit - printed]:
                print(info.id)
                printed += 1
            if not page.has_next:
                break
            query.after = page.next_cursor
    return 0


def cmd_fsck(args) -> int:
    with opened_store(args) as store, user_errors():
        report = store.fsck()
    if report.ok:
        partial = f", {report.partial_objects} partially held" if report.partial_objects else ""
        print(f"ok: {report.objects_checked} objects, {report.chunks_checked} chunks verified{partial}")
        return 0
    for object_id, chunk_index, reason in report.failures:
        where = "object" if chunk_index < 0 else f"chunk {chunk_index}"
        print(f"{object_id} {where}: {reason}")
    raise CliError(f"fsck found {len(report.failures)} failure(s)")
