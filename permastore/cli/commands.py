"""Core subcommands: init, address, put, get, info, query, fsck, pull.

Each handler turns bad input and store failures into a one-line CliError; the output of
`get` reaches its file (or folder) only once every chunk has verified. Commands that only
read set `needs_store=READ` and never create a store.
"""

from __future__ import annotations

from permastore.cli import get, lookup, node, pull, put


def register(subparsers) -> None:
    """Given the top-level subparsers, add the core commands."""
    put.add_parser(subparsers)
    get.add_parser(subparsers)
    lookup.add_parsers(subparsers)  # info, query
    node.add_parsers(subparsers)  # init, address, fsck
    pull.add_parser(subparsers)
