"""Where the data folder is, and opening the store in it for reading or for writing.

One data folder whatever the current folder: `--data DIR`, else `$PERMASTORE_DATA`, else
`~/.permastore`. Commands that only read never create a store: on a folder that holds none
they fail with "no store at DIR" and leave the disk as it was (a mistyped `--data` must not
answer "ok: 0 objects"). Writing commands and `serve` create the store on first use.

Plugin commands declare what they need with `parser.set_defaults(needs_store=READ)` (or
WRITE); `permastore.cli.main` checks a READ command's folder before dispatch. Handlers open
the store with `open_store(args.data, READ)` / `opened_store(args.data, WRITE)`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from permastore.cli.errors import CliError

DATA_ENV = "PERMASTORE_DATA"
HOME_FOLDER = ".permastore"
# The file that makes a folder a store (a wallet alone does not: it has no index yet).
STORE_MARKER = "index.sqlite"
WALLET_NAME = "wallet.json"

READ = "read"
WRITE = "write"
MODES = (READ, WRITE)


def default_data_dir() -> str:
    """Return the data folder used when `--data` is not given: $PERMASTORE_DATA, else ~/.permastore."""
    chosen = os.environ.get(DATA_ENV)
    if chosen:
        return os.path.expanduser(chosen)
    return str(Path.home() / HOME_FOLDER)


def store_exists(data_dir) -> bool:
    """Given a data folder, return True when it holds a store (its index), touching nothing."""
    return (Path(data_dir) / STORE_MARKER).is_file()


def no_store(data_dir) -> CliError:
    """The error a reading command gives on a folder without a store."""
    return CliError(f"no store at {data_dir} (writing commands such as `put`, `init` or `serve` create one)")


def require_store(data_dir) -> None:
    """Given a data folder, raise "no store at DIR" unless it holds a store."""
    if not store_exists(data_dir):
        raise no_store(data_dir)


def open_store(data_dir, mode: str):
    """Given a data folder and READ or WRITE, return the opened Store (the caller closes it).

    READ fails with "no store at DIR" and creates nothing when the folder holds no store;
    WRITE creates the folder, wallet and index when missing. Any failure is one CliError.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be {READ!r} or {WRITE!r}, got {mode!r}")
    if mode == READ:
        require_store(data_dir)
    from permastore.store import Store, StoreError

    try:
        return Store.open(data_dir)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot open data folder {data_dir}: {exc}") from None


@contextmanager
def opened_store(data_dir, mode: str):
    """The same as open_store, as a context manager that closes the store."""
    store = open_store(data_dir, mode)
    try:
        yield store
    finally:
        store.close()


def read_wallet_address(data_dir) -> str:
    """Given a data folder, return its node wallet's address without opening (or creating) the store."""
    import json

    from permastore.protocol.errors import ProtocolError
    from permastore.protocol.wallet import address_of, jwk_owner

    path = Path(data_dir) / WALLET_NAME
    if not path.is_file():
        raise no_store(data_dir)
    try:
        return address_of(jwk_owner(json.loads(path.read_text())))
    except (OSError, ValueError, ProtocolError) as exc:  # ProtocolError is a ValueError; named for the reader
        raise CliError(f"cannot read node wallet {path}: {exc}") from None
