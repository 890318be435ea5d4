"""Entry point of the `permastore` command.

Core subcommands (init, address, put, get, info, query, fsck) live in
`permastore.cli.commands`. Other packages add theirs through the `permastore.commands`
entry-point group, so that `permastore` itself never imports `gateway` or `inference`.
Every parser is a `CommandParser` (global options anywhere, IDs starting with '-'); a
command that sets `needs_store=READ` is refused before dispatch on a folder without a store.
"""

from __future__ import annotations

import sys

from permastore.cli.errors import CliError
from permastore.cli.options import GLOBAL_OPTIONS, CommandParser
from permastore.cli.stores import MODES, READ, default_data_dir, require_store

__all__ = ["build_parser", "default_data_dir", "main"]


def build_parser(argv: list[str] | None = None) -> CommandParser:
    """Given the installed plugins, return the full argument parser; given argv naming a core
    command, return the parser without loading the plugins (they cost ~0.3 s of imports)."""
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
    if argv is not None and command_word(argv) in subparsers.choices:
        return parser  # a core command: the plugins' commands and settings are not needed to run it
    from importlib.metadata import entry_points

    for plugin in entry_points(group="permastore.commands"):
        try:
            register = plugin.load()
        except ImportError as exc:  # a plugin with a missing dependency must not break the core CLI
            print(f"permastore: plugin {plugin.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        register(subparsers)
    return parser


def command_word(argv: list[str]) -> str | None:
    """Given command-line words, return the subcommand's (the first word that is neither an
    option nor a global option's value), or None when there is none."""
    with_value = {flag for option in GLOBAL_OPTIONS if option.options.get("action", "store") in ("store", "append")
                  for flag in option.flags}  # fmt: skip
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            return None  # the top-level help, which lists every command
        if word in with_value:
            next(words, None)  # its value, which may look like a command
        elif not word.startswith("-"):
            return word
    return None


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
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(words)
    args = parser.parse_args(words)
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
