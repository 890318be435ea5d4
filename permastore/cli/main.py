"""Entry point of the `permastore` command.

Core subcommands (put, get, info, query, fsck) live in `permastore.cli.commands`.
Other packages add theirs through the `permastore.commands` entry-point group, so
that `permastore` itself never imports `gateway` or `inference`.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

from permastore.cli.errors import CliError

DEFAULT_DATA_DIR = "./data"


def default_data_dir() -> str:
    """Return the data folder: $PERMASTORE_DATA, else ./data."""
    return os.environ.get("PERMASTORE_DATA") or DEFAULT_DATA_DIR


def build_parser() -> argparse.ArgumentParser:
    """Given the installed plugins, return the full argument parser."""
    parser = argparse.ArgumentParser(
        prog="permastore",
        description="Permanent storage node: Arweave-compatible store, gateway and inference.",
    )
    parser.add_argument(
        "--data",
        default=default_data_dir(),
        metavar="DIR",
        help="data folder (default: $PERMASTORE_DATA or ./data)",
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


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status. Errors print one line, no traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
