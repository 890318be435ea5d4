"""`python -m gateway serve ...`: the serve command without the rest of the CLI."""

import argparse
import sys

from gateway.cli import register
from permastore.cli.errors import CliError
from permastore.cli.stores import default_data_dir


def main(argv: list[str] | None = None) -> int:
    """Parse `serve` arguments and run it; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m gateway")
    parser.add_argument("--data", default=default_data_dir(), metavar="DIR")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CliError as exc:
        print(f"permastore: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
