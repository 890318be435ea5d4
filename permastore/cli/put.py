"""`permastore put`: a file, standard input, a signed item or tx (--raw), or a whole folder."""

from __future__ import annotations

import json
import mimetypes
import os
import sys
from pathlib import Path

from permastore.cli.errors import CliError
from permastore.cli.helpers import open_input, parse_tag, progress_bar, user_errors
from permastore.cli.stores import WRITE, opened_store
from permastore.protocol.tags import Tag

# How many bytes to look at to tell a JSON tx from a binary item (--raw).
SNIFF_BYTES = 64


def add_parser(subparsers) -> None:
    put = subparsers.add_parser(
        "put",
        help="store a file or a folder; print its ID",
        description="Store FILE (or standard input, or every file of a folder with a path manifest); "
        "the last line printed is the ID.",
    )
    put.add_argument("file", metavar="FILE|DIR", help="file to store, - for standard input, or a folder")
    put.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE",
                     help="add a tag (repeatable; for a folder: on its manifest)")
    put.add_argument("--content-type", metavar="TYPE", help="Content-Type tag (guessed from the name otherwise)")
    put.add_argument("--again", action="store_true",
                     help="sign a new object even when this node already stored these bytes with these tags")
    put.add_argument(
        "--raw", action="store_true", help="FILE is a signed binary ANS-104 item or signed tx JSON: keep its own ID"
    )
    folder = put.add_argument_group("folders (each file its own object, plus an arweave/paths manifest)")
    folder.add_argument("--index", metavar="PATH", help="file served for the manifest itself (default: index.html)")
    folder.add_argument("--fallback", metavar="PATH", help="file served for paths the manifest does not list")
    folder.add_argument("--hidden", action="store_true", help="include names starting with '.' (skipped otherwise)")
    put.set_defaults(handler=cmd_put, needs_store=WRITE)


def cmd_put(args) -> int:
    if args.file != "-" and os.path.isdir(args.file):
        return put_folder(args)
    if args.index or args.fallback or args.hidden:
        raise CliError("--index, --fallback and --hidden apply to a folder; FILE is not one")
    tags = [parse_tag(text) for text in args.tag]
    if args.raw and (tags or args.content_type):
        raise CliError("--raw stores a signed item or tx as it is: --tag and --content-type cannot change it")
    stream, size, path = open_input(args.file)
    content_type = args.content_type
    if content_type is None and path is not None and not args.raw:
        content_type = mimetypes.guess_type(path)[0]
    bar = progress_bar(size, "put")
    try:
        with opened_store(args.data, WRITE) as store, user_errors():
            update = bar.update if bar else None
            if args.raw:
                info = put_raw(store, stream, update)
            else:
                info = put_plain(store, stream, path, tags, content_type, args.again, update)
    finally:
        if bar:
            bar.close()
        if path is not None:
            stream.close()
    print(info.id)
    return 0


def put_plain(store, stream, path, tags, content_type, again, progress):
    """Given plain data, return the info of the object this node already signed over the same
    file and tags (unless `again`), or of a new one it signs now."""
    from permastore.store.duplicates import find_same_upload
    from permastore.store.index import content_type_of

    tags = list(tags)
    if content_type and content_type_of(tags) is None:
        tags.append(Tag(b"Content-Type", content_type.encode("utf-8")))  # as put_data would add it
    if path is not None and not again:
        found = find_same_upload(store, path, tags)
        if found is not None:
            print("permastore: already stored with these tags; --again stores a new copy", file=sys.stderr)
            return store.info(found)
    return store.put_data(stream, tags=tags, progress=progress)


def put_raw(store, stream, progress):
    """Given a stream of a signed item or signed tx JSON, store it under its own ID."""
    from permastore.protocol.tx import Transaction
    from permastore.store.ingest import PrefixedStream

    head = stream.read(SNIFF_BYTES)
    if head.lstrip()[:1] == b"{":
        text = head + stream.read()
        try:
            body = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise CliError(f"--raw input looks like JSON but is not valid: {str(exc)[:200]}") from None
        return store.put_tx(Transaction.from_json(body))
    return store.put_item(PrefixedStream(head, stream), progress=progress)


def put_folder(args) -> int:
    """Store every file under the folder and its manifest; print `ID<TAB>path` lines, then the manifest ID."""
    from permastore import folders

    if args.raw or args.content_type:
        raise CliError("--raw and --content-type apply to one file; each file of a folder gets its own Content-Type")
    tags = [parse_tag(text) for text in args.tag]
    if any(tag.name.lower() == b"content-type" for tag in tags):
        raise CliError("a folder's manifest has its own Content-Type; drop the Content-Type tag")
    root, data = Path(args.file).resolve(), Path(args.data).resolve()
    if data == root or root in data.parents:
        raise CliError(f"{args.file} holds the data folder {args.data}: put a folder outside it")
    with user_errors():
        scan = folders.scan_folder(args.file, include_hidden=args.hidden)
        folders.pick_index(scan, args.index)  # a wrong --index or --fallback fails before anything is stored
        if args.fallback:
            folders.pick_index(scan, args.fallback, "fallback")
    if scan.hidden:
        print(f"permastore: skipped {len(scan.hidden)} hidden entr{'y' if len(scan.hidden) == 1 else 'ies'} "
              f"({', '.join(scan.hidden[:3])}{', ...' if len(scan.hidden) > 3 else ''}); --hidden stores them",
              file=sys.stderr)  # fmt: skip
    if scan.empty_folders:
        print(f"permastore: {len(scan.empty_folders)} empty folder(s) not kept (a manifest lists files only)",
              file=sys.stderr)
    bar = progress_bar(scan.total_size, f"put {len(scan.files)} files")
    try:
        with opened_store(args.data, WRITE) as store, user_errors():
            stored = folders.put_folder(store, scan, tags, args.index, args.fallback, bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    for path, object_id in stored.ids.items():
        print(f"{object_id}\t{path}")
    print(stored.manifest.id)
    return 0
