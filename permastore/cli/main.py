"""Entry point of the `permastore` command.

Core subcommands (init, address, put, get, info, query, fsck) live in
`permastore.cli.commands`. Other packages add theirs through the `permastore.commands`
entry-point group, so that `permastore` itself never imports `gateway` or `inference`.
Every parser is a `CommandParser` (global options anywhere, IDs starting with '-'); a
command that sets `needs_store=READ` is refused before dispatch on a folder without a store.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

from permastore.cli.errors import CliError
from permastore.cli.options import CommandParser
from permastore.cli.stores import MODES, READ, default_data_dir, require_store

__all__ = ["build_parser", "default_data_dir", "main"]


def build_parser() -> CommandParser:
    """Given the installed plugins, return the full argument parser."""
    parser = CommandParser(
        prog="permastore",
        description="Permanent storage node: Arweave-compatible store, gateway and inference.",
        epilog="Options shown here (--data) are accepted after the command too.",
        top_level=True,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    from permastore.cli import commands

    commands.register(subparsers)
    for plugin in entry_points(group="permastore.commands"):
        try:
            register = plugin.load()
        except ImportError as exc:  # a plugin with a missing dependency must not break the core CLI
            print(f"permastore: plugin {plugin.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        register(subparsers)
    return parser


def check_store_need(args) -> None:
    """Given parsed arguments, refuse a reading command on a folder that holds no store."""
    need = getattr(args, "needs_store", None)
    if need is None:
        return
    if need not in MODES:
        raise CliError(f"command declares needs_store={need!r}; expected one of {', '.join(MODES)}")
    if need == READ:
        require_store(args.data)


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status. Errors print one line, no traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_store_need(args)
        status = args.handler(args)
    except CliError as exc:
        print(f"permastore: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("permastore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): quiet exit, as coreutils do.
        try:
            sys.stdout.close()
        except Exception:
            pass
        return 0
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
