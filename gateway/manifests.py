"""Path manifests (`application/x.arweave-manifest+json`, arweave/paths 0.1.0 and 0.2.0).

Resolution is a pure lookup in the manifest's own `paths` table: a request path is
only ever compared against keys written in the manifest, never joined to anything,
so `..` or `%2e%2e` cannot reach an ID the manifest does not list.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import unquote

from permastore.protocol import b64url

MANIFEST_CONTENT_TYPE = "application/x.arweave-manifest+json"
MANIFEST_TYPE = "arweave/paths"
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0")
MAX_MANIFEST_SIZE = 10 * 1024 * 1024  # larger "manifests" are served as plain data
DEFAULT_PARSED_BYTES = 64 * 1024 * 1024  # memory for parsed manifests
PARSED_COST_FACTOR = 3  # a parsed manifest's dict of paths holds about three times its JSON's bytes


class PathManifestError(ValueError):
    """The manifest is not a valid arweave/paths document."""


@dataclass(frozen=True)
class ServedManifest:
    """Paths mapped to IDs, with the optional index and fallback IDs."""

    paths: dict[str, str]
    index_id: str | None
    fallback_id: str | None


def _entry_id(entry: object, where: str) -> str:
    """Given a manifest entry like {"id": ...}, return its ID or raise PathManifestError."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        raise PathManifestError(f"{where} has no id")
    if not b64url.is_id(entry["id"]):
        raise PathManifestError(f"{where} id is not a 43-character ID")
    return entry["id"]


def parse_manifest(raw: bytes) -> ServedManifest:
    """Given the manifest bytes, return the ServedManifest or raise PathManifestError."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PathManifestError(f"manifest is not JSON: {exc}") from None
    except RecursionError:
        raise PathManifestError("manifest JSON is nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("manifest") != MANIFEST_TYPE:
        raise PathManifestError("not an arweave/paths manifest")
    if doc.get("version") not in SUPPORTED_VERSIONS:
        raise PathManifestError(f"unsupported manifest version {doc.get('version')!r}")
    raw_paths = doc.get("paths", {})
    if not isinstance(raw_paths, dict):
        raise PathManifestError("paths is not an object")
    paths = {str(key): _entry_id(value, f"path {key!r}") for key, value in raw_paths.items()}
    index_id = _index_id(doc.get("index"), paths)
    fallback = doc.get("fallback")
    fallback_id = _entry_id(fallback, "fallback") if fallback is not None else None
    return ServedManifest(paths, index_id, fallback_id)


def _index_id(index: object, paths: dict[str, str]) -> str | None:
    """Given the manifest's index entry, return the ID it names: by id (0.2.0), else by path.

    As ar-io-node resolves them: when an index has both, `id` wins over `path`.
    """
    if index is None:
        return None
    if not isinstance(index, dict):
        raise PathManifestError("index is not an object")
    if "id" in index:
        return _entry_id(index, "index")
    if "path" in index:
        return paths.get(str(index["path"]))  # an index naming a missing path has no index
    raise PathManifestError("index has neither path nor id")


def resolve(manifest: ServedManifest, subpath: str) -> str | None:
    """Given a manifest and the request path after `/{manifest}/`, return the ID to serve.

    Empty path -> index. A path is tried as written, URL-decoded, and as a folder's
    `index.html`; then the fallback. None means 404.
    """
    if subpath in ("", "/"):
        return manifest.index_id or manifest.fallback_id
    candidates = [subpath, unquote(subpath)]
    for candidate in list(candidates):
        stripped = candidate.strip("/")
        candidates += [stripped, f"{stripped}/index.html" if stripped else "index.html"]
    for candidate in candidates:
        if candidate in manifest.paths:
            return manifest.paths[candidate]
    return manifest.fallback_id


class ParsedManifests:
    """Given a byte budget, keep parsed manifests by ID (least recently used out first); thread-safe.

    A manifest under an ID never changes, and parsing a large one holds the GIL for a
    while, so each is parsed once rather than on every request for a path inside it.
    Invalid manifests are remembered too (as None): they are served as plain data.
    """

    def __init__(self, max_bytes: int = DEFAULT_PARSED_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[ServedManifest | None, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, manifest_id: str, load) -> ServedManifest | None:
        """Given an ID and load() -> raw bytes, return its parsed ServedManifest (None when invalid), parsing at most once."""
        with self._lock:
            if manifest_id in self._entries:
                self._entries.move_to_end(manifest_id)
                return self._entries[manifest_id][0]
        raw = load()
        try:
            manifest = parse_manifest(raw)
        except PathManifestError:
            manifest = None
        cost = len(raw) * PARSED_COST_FACTOR
        with self._lock:
            if manifest_id not in self._entries and cost <= self.max_bytes:
                self._entries[manifest_id] = (manifest, cost)
                self._bytes += cost
                while self._bytes > self.max_bytes:
                    _, (_, old_cost) = self._entries.popitem(last=False)
                    self._bytes -= old_cost
        return manifest
