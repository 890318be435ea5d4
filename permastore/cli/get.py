"""`permastore get`: an object's verified data to stdout or a file, or a stored folder back to disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from permastore.cli.errors import CliError
from permastore.cli.helpers import parse_id, progress_bar, user_errors
from permastore.cli.stores import READ, opened_store


def add_parser(subparsers) -> None:
    get = subparsers.add_parser(
        "get",
        help="write an object's data to stdout or a file (a manifest: its folder)",
        description="Write ID's verified data to standard output or to -o FILE. When ID is a path manifest "
        "(as `put DIR` prints), -o DIR writes the folder back; standard output gets the manifest JSON.",
    )
    get.add_argument("id", metavar="ID")
    get.add_argument("-o", "--output", metavar="FILE|DIR", help="write here instead of standard output")
    get.set_defaults(handler=cmd_get, needs_store=READ)


def cmd_get(args) -> int:
    from permastore.folders import MANIFEST_CONTENT_TYPE

    object_id = parse_id(args.id)
    with opened_store(args.data, READ) as store, user_errors():
        info = store.info(object_id)
        if info is None:
            raise CliError(f"{object_id} not found")
        if args.output and info.content_type == MANIFEST_CONTENT_TYPE:
            return get_folder(store, object_id, Path(args.output))
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


def check_output_file(target: Path) -> None:
    """Given -o FILE, raise a one-line error when it cannot be written (before any byte is read)."""
    if not target.parent.is_dir():
        raise CliError(f"folder {target.parent} does not exist")
    if target.is_dir():
        raise CliError(f"{target} is a folder; give a file name")


def write_file(store, object_id: str, target: Path, bar) -> None:
    """Write the verified data to a temporary file beside target, then rename it into place."""
    check_output_file(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
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


def get_folder(store, manifest_id: str, target: Path) -> int:
    """Write the manifest's files under target (new or empty); print a summary line on stderr."""
    from permastore import folders

    plan = folders.plan_folder(store, manifest_id)
    bar = progress_bar(plan.total_size, f"get {len(plan.sizes)} files")
    try:
        written = folders.write_folder(store, plan, target, bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    for note in written.notes:
        print(f"permastore: note: {note}", file=sys.stderr)
    print(f"{written.files} files, {written.size} bytes written to {written.target}", file=sys.stderr)
    return 0
