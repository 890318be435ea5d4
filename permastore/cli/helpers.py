"""What the core commands share: argument parsing, one-line errors, progress bars, input files."""

from __future__ import annotations

import os
import stat
import sys
from contextlib import contextmanager

from permastore.cli.errors import CliError


@contextmanager
def user_errors():
    """Report protocol, store and file errors as one line, without a traceback."""
    from permastore.store import StoreError

    try:
        yield
    except (StoreError, ValueError) as exc:  # ProtocolError, ManifestError and FolderError are ValueErrors
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
    """Given a command-line ID, return it; a one-line error unless it is 43 base64url characters."""
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
