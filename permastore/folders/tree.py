"""Local folders <-> stored path manifests.

Putting: `scan_folder` lists the regular files under a folder before anything is stored,
and refuses what a manifest cannot hold faithfully: symbolic links (followed, they could
publish files from outside the folder; kept, a manifest has no way to say "link"), FIFOs,
sockets and devices, and names that are not plain UTF-8 file names. Hidden entries (names
starting with '.') are skipped unless asked for: data put here is permanent, and a stray
`.env` or `.git` must not be published by accident. Empty folders have no manifest entry.
`put_folder` then stores each file as its own object and the manifest last.

Getting: `write_folder` checks every path of the manifest (`manifest.check_path`) and that
every ID is stored before it writes a byte, builds the tree in a private temporary folder
beside the target with `openat`-style calls that never follow a link, and renames it into
place only when every file verified: the target appears whole or not at all.
"""

from __future__ import annotations

import io
import mimetypes
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from permastore.folders.manifest import (
    MANIFEST_CONTENT_TYPE,
    MAX_MANIFEST_SIZE,
    ManifestError,
    PathManifest,
    UnsafePath,
    build_manifest,
    check_name,
    check_path,
    check_tree,
    parse_manifest,
)
from permastore.protocol.tags import Tag
from permastore.store.records import ObjectInfo

DEFAULT_INDEX = "index.html"
FALLBACK_CONTENT_TYPE = "application/octet-stream"
MANIFEST_TYPE_TAG = Tag(b"Type", b"manifest")  # what arkb and ardrive tag their manifests with
SHOWN_PROBLEMS = 5


class FolderError(ValueError):
    """A folder that cannot be put, or a manifest that cannot be written back."""


@dataclass(frozen=True)
class LocalFile:
    """A regular file found under the folder: its manifest path, where it is, its size."""

    path: str
    source: Path
    size: int


@dataclass
class FolderScan:
    """What `scan_folder` found: the files to store and what it left out."""

    root: Path
    files: list[LocalFile] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # skipped hidden entries (relative paths)
    empty_folders: list[str] = field(default_factory=list)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class StoredFolder:
    """The result of `put_folder`: the manifest's ObjectInfo and each path's ID."""

    manifest: ObjectInfo
    ids: dict[str, str]


@dataclass(frozen=True)
class WrittenFolder:
    """The result of `write_folder`: what was written and what the manifest holds beyond it."""

    target: Path
    files: int
    size: int
    notes: list[str]


# -- put ----------------------------------------------------------------------------------


def scan_folder(root, include_hidden: bool = False) -> FolderScan:
    """Given a folder, return the FolderScan of its regular files; raise FolderError listing refusals."""
    root = Path(root)
    if not root.is_dir():
        raise FolderError(f"{root} is not a folder")
    scan = FolderScan(root)
    problems: list[str] = []
    _scan_into(scan, root, "", include_hidden, problems)
    if problems:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise FolderError(f"cannot put {root}: " + "; ".join(problems[:SHOWN_PROBLEMS]) + more)
    if not scan.files:
        raise FolderError(f"{root} holds no files to store")
    scan.files.sort(key=lambda f: f.path)
    return scan


def _scan_into(scan: FolderScan, folder: Path, prefix: str, include_hidden: bool, problems: list[str]) -> bool:
    """Add folder's files to scan (recursively); return True when it held at least one file."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append(f"{folder}: cannot list: {exc.strerror or exc}")
        return False
    held = False
    for entry in entries:
        relative = f"{prefix}{entry.name}"
        if entry.name.startswith(".") and not include_hidden:
            scan.hidden.append(relative)
            continue
        where = os.path.join(folder, entry.name)
        try:
            check_name(entry.name, repr(relative))
        except UnsafePath as exc:
            problems.append(f"{where!r}: {exc}")
            continue
        try:
            if entry.is_symlink():
                problems.append(f"{where} is a symbolic link (put stores regular files only; copy the file in)")
            elif entry.is_dir(follow_symlinks=False):
                if _scan_into(scan, Path(where), relative + "/", include_hidden, problems):
                    held = True
                else:
                    scan.empty_folders.append(relative)
            elif entry.is_file(follow_symlinks=False):
                scan.files.append(LocalFile(relative, Path(where), entry.stat(follow_symlinks=False).st_size))
                held = True
            else:
                problems.append(f"{where} is not a regular file (a FIFO, socket or device)")
        except OSError as exc:
            problems.append(f"{where}: {exc.strerror or exc}")
    return held


def content_type_for(path: str) -> str:
    """Given a file's path, return its Content-Type, guessed from its name."""
    return mimetypes.guess_type(path, strict=False)[0] or FALLBACK_CONTENT_TYPE


def pick_index(scan: FolderScan, index: str | None, role: str = "index") -> str | None:
    """Given the scan and --index (or None), return the index path: the one asked for, else index.html."""
    paths = {f.path for f in scan.files}
    if index is None:
        return DEFAULT_INDEX if DEFAULT_INDEX in paths else None
    wanted = index.removeprefix("./")
    if wanted not in paths:
        raise FolderError(f"{role} {index!r} is not a file in {scan.root} (give its path inside the folder)")
    return wanted


def put_folder(store, scan: FolderScan, tags=(), index: str | None = None, fallback: str | None = None,
               progress=None) -> StoredFolder:  # fmt: skip
    """Given a Store and a scan, store every file and then the manifest; return the StoredFolder.

    tags go on the manifest (the folder's one ID), each file gets its Content-Type.
    index / fallback are paths in the folder (index defaults to index.html when present).
    """
    index_path = pick_index(scan, index)
    fallback_path = pick_index(scan, fallback, "fallback") if fallback is not None else None
    ids: dict[str, str] = {}
    for local in scan.files:
        ids[local.path] = _put_file(store, local, progress).id
    tags = list(tags)
    if not any(tag.name == MANIFEST_TYPE_TAG.name for tag in tags):
        tags.append(MANIFEST_TYPE_TAG)
    document = build_manifest(ids, index_path, ids[fallback_path] if fallback_path else None)
    manifest = store.put_data(io.BytesIO(document), tags=tags, content_type=MANIFEST_CONTENT_TYPE)
    return StoredFolder(manifest, ids)


def _put_file(store, local: LocalFile, progress):
    # Security: O_NOFOLLOW, so a file swapped for a link after the scan is refused, not followed.
    try:
        fd = os.open(local.source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise FolderError(f"cannot read {local.source}: {exc.strerror or exc}") from None
    with open(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise FolderError(f"{local.source} is no longer a regular file")
        return store.put_data(stream, content_type=content_type_for(local.path), progress=progress)


# -- get ----------------------------------------------------------------------------------


def read_manifest(store, manifest_id: str) -> PathManifest:
    """Given a Store and the ID of a stored manifest, return it parsed, every path checked."""
    info = store.info(manifest_id)
    if info is None:
        raise FolderError(f"{manifest_id} not found")
    if info.data_size > MAX_MANIFEST_SIZE:
        raise ManifestError(f"manifest {manifest_id} is larger than {MAX_MANIFEST_SIZE} bytes")
    manifest = parse_manifest(b"".join(store.read(manifest_id)))
    for path in manifest.paths:
        check_path(path)
    check_tree(manifest.paths)
    return manifest


@dataclass(frozen=True)
class FolderPlan:
    """A stored manifest ready to write: every path checked, every ID stored, with its size."""

    manifest_id: str
    manifest: PathManifest
    sizes: dict[str, int]

    @property
    def total_size(self) -> int:
        return sum(self.sizes.values())


def plan_folder(store, manifest_id: str) -> FolderPlan:
    """Given a Store and a manifest ID, return its FolderPlan; raise FolderError / ManifestError otherwise.

    Nothing is written: an unsafe path (UnsafePath), a file and folder of one name, or an
    ID this store does not hold is refused here.
    """
    manifest = read_manifest(store, manifest_id)
    if not manifest.paths:
        raise FolderError(f"manifest {manifest_id} lists no paths")
    sizes = {}
    for path, object_id in manifest.paths.items():
        info = store.info(object_id)
        if info is None or not info.data_complete:
            raise FolderError(f"path {path!r}: {object_id} is not stored here")
        sizes[path] = info.data_size
    return FolderPlan(manifest_id, manifest, sizes)


def write_folder(store, plan: FolderPlan, target, progress=None) -> WrittenFolder:
    """Given a Store, a FolderPlan and a target folder (absent or empty), write the files there.

    The target appears complete or not at all: CorruptChunk and OSError leave nothing behind.
    """
    target = Path(target)
    _check_target(target)
    paths = plan.manifest.paths
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    os.mkdir(partial, 0o700)  # private until complete: nobody can plant a link inside
    try:
        root_fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for path in sorted(paths):
                _write_one(store, root_fd, path.split("/"), paths[path], progress)
        finally:
            os.close(root_fd)
        os.chmod(partial, 0o777 & ~_umask())
        os.rename(partial, target)  # replaces an empty target folder, atomically
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return WrittenFolder(target, len(paths), plan.total_size, _notes(plan.manifest))


def _check_target(target: Path) -> None:
    parent = target.parent
    if not parent.is_dir():
        raise FolderError(f"folder {parent} does not exist")
    if target.is_symlink():
        raise FolderError(f"{target} is a symbolic link; give a new or empty folder")
    if target.exists():
        if not target.is_dir():
            raise FolderError(f"{target} exists and is not a folder")
        if any(target.iterdir()):
            raise FolderError(f"{target} is not empty; give a new or empty folder")


def _write_one(store, root_fd: int, parts: list[str], object_id: str, progress) -> None:
    """Write one file below root_fd, making its folders; no step follows a link."""
    fd = os.dup(root_fd)
    try:
        for name in parts[:-1]:
            try:
                os.mkdir(name, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            next_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=fd)
        try:
            store.copy_to(object_id, out, progress=progress)
        finally:
            os.close(out)
    finally:
        os.close(fd)


def _notes(manifest: PathManifest) -> list[str]:
    """What the manifest serves that has no file of its own."""
    notes = []
    if manifest.index_id is not None and manifest.index_path is None:
        notes.append(f"the manifest's index is {manifest.index_id}, which has no path: not written")
    if manifest.index_path is not None and manifest.index_id is None:
        notes.append(f"the manifest's index {manifest.index_path!r} is not one of its paths")
    if manifest.fallback_id is not None and manifest.fallback_id not in manifest.paths.values():
        notes.append(f"the manifest's fallback is {manifest.fallback_id}, which has no path: not written")
    return notes


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
