"""Arweave path manifests (`arweave/paths` 0.1.0 and 0.2.0): build, parse, check paths (pure).

A manifest maps relative paths ("css/site.css") to object IDs, with an optional index (the
path, or in 0.2.0 the ID, served for the manifest itself) and, in 0.2.0, a fallback ID
served for paths it does not list. arkb, ardrive and ar-io-node use the same document.

Writing a stranger's manifest to disk is the risky direction: every path is checked here
before anything is written (`check_path`), so no path can name an absolute location, climb
with `..`, hide a separator, or be both a file and a folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from permastore.protocol import b64url

MANIFEST_CONTENT_TYPE = "application/x.arweave-manifest+json"
MANIFEST_TYPE = "arweave/paths"
WRITTEN_VERSION = "0.2.0"
READ_VERSIONS = ("0.1.0", "0.2.0")
MAX_MANIFEST_SIZE = 10 * 1024 * 1024  # the gateway serves larger "manifests" as plain data
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX on Linux and macOS


class ManifestError(ValueError):
    """The data is not a valid arweave/paths manifest."""


class UnsafePath(ManifestError):
    """A manifest path that cannot be written as a file under the target folder."""


@dataclass(frozen=True)
class PathManifest:
    """A parsed manifest: paths -> IDs, and what it serves for "" and for unknown paths."""

    paths: dict[str, str]
    index_path: str | None
    index_id: str | None  # the ID served for the manifest itself (from the index path or id)
    fallback_id: str | None


def check_path(path: str) -> tuple[str, ...]:
    """Given a manifest path, return its parts; raise UnsafePath if it cannot be a relative file path.

    Refused: empty paths, absolute paths, a trailing '/', empty parts ('a//b'), '.' and '..'
    parts, backslashes (a separator elsewhere), control characters, names or paths too long
    for the file system, and names that are not UTF-8.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePath("empty path")
    shown = json.dumps(path)[:120]
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafePath(f"path {shown} is not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise UnsafePath(f"path {shown} is longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/"):
        raise UnsafePath(f"path {shown} is absolute")
    if path.endswith("/"):
        raise UnsafePath(f"path {shown} ends with '/' (it names a folder, not a file)")
    parts = tuple(path.split("/"))
    for part in parts:
        check_name(part, shown)
    return parts


def check_name(part: str, shown: str) -> None:
    """Given one part of a path (and the path, for messages), raise UnsafePath if it is not a plain name."""
    if part == "":
        raise UnsafePath(f"path {shown} has an empty part ('//')")
    if part in (".", ".."):
        raise UnsafePath(f"path {shown} has a {part!r} part")
    if "\\" in part:
        raise UnsafePath(f"path {shown} contains a backslash")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in part):
        raise UnsafePath(f"path {shown} contains a control character")
    try:
        size = len(part.encode("utf-8"))
    except UnicodeEncodeError:  # a file name in another encoding (os.fsdecode's surrogates)
        raise UnsafePath(f"path {shown} is not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise UnsafePath(f"path {shown} has a name longer than {MAX_NAME_BYTES} bytes")


def check_tree(paths) -> None:
    """Given manifest paths, raise UnsafePath when one is also a folder of another ('a' and 'a/b')."""
    files = set(paths)
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                raise UnsafePath(f"path {json.dumps(folder)} is both a file and the folder of {json.dumps(path)}")


def build_manifest(paths: dict[str, str], index: str | None = None, fallback_id: str | None = None) -> bytes:
    """Given paths -> IDs, an optional index path and fallback ID, return the 0.2.0 manifest bytes.

    Paths are sorted, so the same folder always gives the same document.
    """
    for path, object_id in paths.items():
        check_path(path)
        _check_id(object_id, f"path {path!r}")
    check_tree(paths)
    if index is not None and index not in paths:
        raise ManifestError(f"index {index!r} is not one of the paths")
    doc: dict = {"manifest": MANIFEST_TYPE, "version": WRITTEN_VERSION}
    if index is not None:
        doc["index"] = {"path": index}
    if fallback_id is not None:
        doc["fallback"] = {"id": _check_id(fallback_id, "fallback")}
    doc["paths"] = {path: {"id": paths[path]} for path in sorted(paths)}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_manifest(raw: bytes) -> PathManifest:
    """Given manifest bytes, return the PathManifest or raise ManifestError (paths not yet checked)."""
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"manifest is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or doc.get("manifest") != MANIFEST_TYPE:
        raise ManifestError("not an arweave/paths manifest")
    if doc.get("version") not in READ_VERSIONS:
        raise ManifestError(f"unsupported manifest version {str(doc.get('version'))[:40]!r}")
    raw_paths = doc.get("paths", {})
    if not isinstance(raw_paths, dict):
        raise ManifestError("manifest paths is not an object")
    paths = {}
    for key, entry in raw_paths.items():
        if not isinstance(entry, dict):
            raise ManifestError(f"path {key[:120]!r} is not an object with an id")
        paths[key] = _check_id(entry.get("id"), f"path {key[:120]!r}")
    index_path, index_id = _index(doc.get("index"), paths)
    fallback = doc.get("fallback")
    if fallback is not None and not isinstance(fallback, dict):
        raise ManifestError("manifest fallback is not an object")
    fallback_id = _check_id(fallback.get("id"), "fallback") if fallback is not None else None
    return PathManifest(paths, index_path, index_id, fallback_id)


def _index(index: object, paths: dict[str, str]) -> tuple[str | None, str | None]:
    """Given the manifest's index entry, return (its path or None, the ID it serves or None)."""
    if index is None:
        return None, None
    if not isinstance(index, dict):
        raise ManifestError("manifest index is not an object")
    if "path" in index:
        path = index["path"]
        if not isinstance(path, str):
            raise ManifestError("manifest index path is not a string")
        return path, paths.get(path)  # an index naming a missing path serves nothing
    if "id" in index:
        return None, _check_id(index["id"], "index")
    raise ManifestError("manifest index has neither path nor id")


def _check_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not b64url.is_id(value):
        raise ManifestError(f"{where} has no valid 43-character id")
    return value
