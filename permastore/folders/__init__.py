"""Folders as Arweave path manifests: put a local folder, write a stored one back.

`manifest` builds and parses `arweave/paths` documents and decides which paths are safe to
write (pure); `tree` scans a local folder, stores its files and manifest, and writes a
stored manifest's files back under one target folder, nothing outside it.
"""

from permastore.folders.manifest import (
    MANIFEST_CONTENT_TYPE,
    ManifestError,
    PathManifest,
    UnsafePath,
    build_manifest,
    check_path,
    parse_manifest,
)
from permastore.folders.tree import (
    FolderError,
    FolderPlan,
    FolderScan,
    LocalFile,
    pick_index,
    plan_folder,
    put_folder,
    scan_folder,
    write_folder,
)

__all__ = [
    "MANIFEST_CONTENT_TYPE",
    "FolderError",
    "FolderPlan",
    "FolderScan",
    "LocalFile",
    "ManifestError",
    "PathManifest",
    "UnsafePath",
    "build_manifest",
    "check_path",
    "parse_manifest",
    "pick_index",
    "plan_folder",
    "put_folder",
    "scan_folder",
    "write_folder",
]
