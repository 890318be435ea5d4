"""What model ID a name stands for on this node's peers: their /api/tags, asked in order.

A name this node does not know (no name record here names it) may be known to a peer:
`POST /api/pull {"model": "gemma3:270m"}` (or `permastore model pull gemma3:270m`) asks
every peer (`serve --peer`, `--upstream`) for its `/api/tags` and takes the model ID the
peer lists under that name (an entry's `digest` is the 32 bytes of the model ID, in hex).
Peers that answer must agree: two peers naming different models is refused (pull by ID
then), since a name is only a peer's word. The ID is what is trusted: its bytes are
fetched and proven against it, whoever named it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from inference.errors import InferenceError
from inference.model_names import InvalidModelName, parse_name
from permastore.protocol import b64url

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 10.0
MAX_TAGS_BYTES = 4 * 1024 * 1024  # Security: a peer's /api/tags is read up to this, no further
DIGEST_HEX = 64


class PeersDisagree(InferenceError):
    """Peers list the same name for different models: only an ID says which is meant."""

    status = 409


@dataclass(frozen=True)
class PeerName:
    """A name as a peer lists it: the model ID it stands for, and the peers that said so."""

    name: str
    model_id: str
    peers: tuple[str, ...]


def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > MAX_TAGS_BYTES:
            raise ValueError(f"/api/tags over {MAX_TAGS_BYTES} bytes")
    return bytes(body)


def tags_of(client: httpx.Client, url: str) -> list[dict]:
    """Given a peer's base URL, return the entries of its /api/tags ([] when it has none or fails)."""
    try:
        with client.stream("GET", f"{url}/api/tags") as response:
            if response.status_code != 200:
                return []
            body = json.loads(_read_capped(response))
    except (httpx.HTTPError, ValueError) as exc:  # a peer that cannot say is a peer that does not know
        log.warning("asking %s for its model names failed: %s", url, exc)
        return []
    models = body.get("models") if isinstance(body, dict) else None
    return [entry for entry in models if isinstance(entry, dict)] if isinstance(models, list) else []


def model_id_in(entries: Iterable[dict], name: str) -> str | None:
    """Given /api/tags entries and a canonical name, return the model ID listed under it, else None."""
    for entry in entries:
        for field in ("model", "name"):
            listed = entry.get(field)
            if not isinstance(listed, str):
                continue
            try:
                if str(parse_name(listed)) != name:
                    continue
            except InvalidModelName:
                continue
            digest = entry.get("digest")
            if isinstance(digest, str) and len(digest) == DIGEST_HEX:
                try:
                    return b64url.encode(bytes.fromhex(digest))
                except ValueError:
                    return None
    return None


def resolve_on_peers(peer_urls: list[str], ref: str) -> PeerName | None:
    """Given peer URLs and a model name, return the ID the peers list under it; None when none does.

    Raises PeersDisagree (409) when peers name different models.
    """
    try:
        name = str(parse_name(ref))
    except InvalidModelName:
        return None
    found: dict[str, list[str]] = {}
    with httpx.Client(timeout=ASK_TIMEOUT_S, follow_redirects=False) as client:
        for url in peer_urls:
            model_id = model_id_in(tags_of(client, url.rstrip("/")), name)
            if model_id is not None:
                found.setdefault(model_id, []).append(url)
    if len(found) > 1:
        said = "; ".join(f"{', '.join(urls)}: {model_id}" for model_id, urls in found.items())
        raise PeersDisagree(f"peers name different models '{name}' ({said}): pull by model ID")
    if not found:
        return None
    model_id, urls = next(iter(found.items()))
    return PeerName(name, model_id, tuple(urls))
