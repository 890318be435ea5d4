"""The parser every `permastore` command is built with: global options anywhere, IDs that start with '-'.

Global options (`--data`, and any added to GLOBAL_OPTIONS) are defined on the top-level
parser with their real defaults and on every subcommand parser with no default, so they
are accepted before or after the subcommand. Subcommand parsers are made by argparse's
public `parser_class` hook: plugins get this for free from `subparsers.add_parser`, nested
subcommands included. A plugin that still declares `--data` itself replaces the copy here
(conflict_handler="resolve"), so both forms work while plugins catch up.

One ID in 64 starts with '-', and argparse takes such a word for an option. Before parsing,
a word shaped like an ID (43 base64url characters) that starts with '-' is marked as a
value (prefixed with NUL, which no real command line can contain), and the mark is taken
off every parsed value afterwards: such a word is always an ID or a value, never an option,
the rule argparse applies to negative numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field

from permastore.cli.stores import DATA_ENV, HOME_FOLDER, default_data_dir

# The names permastore.store.bucket.settings reads (not imported: the CLI starts without the store).
ENDPOINT_ENV = "PERMASTORE_S3_ENDPOINT"
BUCKET_ENV = "PERMASTORE_S3_BUCKET"
CACHE_SIZE_ENV = "PERMASTORE_CACHE_SIZE"

# Marks a word as a value for the parse; argv strings are C strings, so none contains NUL.
VALUE_MARK = "\0"
DASH_ID = re.compile(r"^-[A-Za-z0-9_-]{42}$")
NEGATIVE_NUMBER = re.compile(r"^-\d+$")  # argparse already reads these as values


@dataclass(frozen=True)
class GlobalOption:
    """An option every command accepts, before or after its subcommand."""

    flags: tuple[str, ...]
    default: object  # a value, or a callable returning it (read when the parser is built)
    options: dict = field(default_factory=dict)  # the rest of add_argument's keywords

    def add_to(self, parser: argparse.ArgumentParser, top_level: bool) -> None:
        """Add the option: with its default at the top, with none (SUPPRESS) below."""
        default = self.default() if callable(self.default) else self.default
        parser.add_argument(*self.flags, default=default if top_level else argparse.SUPPRESS, **self.options)


GLOBAL_OPTIONS: tuple[GlobalOption, ...] = (
    GlobalOption(
        ("--data",),
        default_data_dir,
        {"metavar": "DIR", "help": f"data folder (default: ${DATA_ENV}, else ~/{HOME_FOLDER})"},
    ),
    # The bucket (permastore.store.bucket): chunk data and signed headers in S3-compatible
    # storage, the data folder a cache of it. Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
    GlobalOption(
        ("--s3-endpoint",),
        lambda: os.environ.get(ENDPOINT_ENV, ""),
        {"metavar": "URL", "help": f"S3-compatible endpoint of the bucket (default: ${ENDPOINT_ENV}; AWS when empty)"},
    ),
    GlobalOption(
        ("--s3-bucket",),
        lambda: os.environ.get(BUCKET_ENV, ""),
        {"metavar": "NAME", "help": f"keep chunk data and headers in this bucket (default: ${BUCKET_ENV}; none: local only)"},
    ),
    GlobalOption(
        ("--cache-size",),
        lambda: os.environ.get(CACHE_SIZE_ENV, ""),
        {"metavar": "BYTES", "help": f"with a bucket, local chunk data kept at most (e.g. 100M, 10G; default: ${CACHE_SIZE_ENV}, else 10G)"},
    ),
)
# Option name -> environment variable: Store.open reads the bucket from the environment, so
# every command (plugins included: serve, model add) opens the store on the bucket given here.
BUCKET_OPTIONS = (("s3_endpoint", ENDPOINT_ENV), ("s3_bucket", BUCKET_ENV), ("cache_size", CACHE_SIZE_ENV))


def export_bucket_options(namespace, parser) -> None:
    """Given parsed options, put the bucket ones into the environment for Store.open (and children)."""
    size = getattr(namespace, "cache_size", "")
    if size:
        from permastore.store.bucket.settings import parse_size

        try:
            parse_size(size)
        except ValueError as exc:
            parser.error(f"--cache-size: {exc}")
    for name, env in BUCKET_OPTIONS:
        value = getattr(namespace, name, None)
        if value:
            os.environ[env] = value


def mark_dash_ids(args: list[str]) -> list[str]:
    """Given argv, return it with every ID-shaped word that starts with '-' marked as a value."""
    marked: list[str] = []
    for position, word in enumerate(args):
        if word == "--":  # everything after it is a value already
            return marked + args[position:]
        if DASH_ID.match(word) and not NEGATIVE_NUMBER.match(word):
            word = VALUE_MARK + word
        marked.append(word)
    return marked


def unmark(value):
    """Given a parsed value (a string, a list of them, anything else), return it without marks."""
    if isinstance(value, str):
        return value[len(VALUE_MARK):] if value.startswith(VALUE_MARK) else value
    if isinstance(value, list):
        return [unmark(item) for item in value]
    if isinstance(value, tuple):
        return tuple(unmark(item) for item in value)
    return value


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that takes the global options and dash IDs anywhere (see the module)."""

    def __init__(self, *args, top_level: bool = False, **kwargs):
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        for option in GLOBAL_OPTIONS:
            option.add_to(self, top_level)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", CommandParser)
        return super().add_subparsers(**kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        namespace, extras = super().parse_known_args(mark_dash_ids(args), namespace)
        for name, value in vars(namespace).items():
            setattr(namespace, name, unmark(value))
        export_bucket_options(namespace, self)
        return namespace, [unmark(word) for word in extras]

    def error(self, message: str):
        super().error(message.replace(VALUE_MARK, ""))
