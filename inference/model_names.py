"""Model names: Ollama-style `name[:tag]` bound to a model ID by a signed name record.

A name record is an ANS-104 item signed by the node wallet (or, on another node, by
whoever recorded it), tagged so that it travels with the data and can be found by tags:

    App-Name: permastore    Type: model-name    Record-Version: 1
    Name: gemma3:270m       Model: <model ID>   Created: <Unix ms>

Its data repeats the same fields as canonical JSON, for people; the signed tags are the
record. A name resolves to the winning record among those signed by a trusted owner (the
node wallet, and `--trust-model-owner` owners): the node wallet's newest record wins,
else the newest of the other trusted owners (ties: the larger record ID). Recording a
name again re-points it. Nothing else can claim a name: a stranger's record is ignored.

Names follow Ollama's rules (`[host/][namespace/]model[:tag]`, tag `latest` by default,
compared case-insensitively) and are kept in one canonical form: lowercase, Ollama's
default host and namespace left out, the tag always written (`gemma3` -> `gemma3:latest`).
A model ID, and `ID:latest`, stand for themselves.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from inference.errors import InvalidRequest, ModelNotFound
from inference.store_types import InferenceStore
from permastore.protocol.b64url import is_id
from permastore.protocol.tags import Tag
from permastore.protocol.wallet import address_of
from permastore.store.records import ObjectInfo, Query

NAME_TYPE = "model-name"
NAME_RECORD_VERSION = 1
APP_NAME = "permastore"
CONTENT_TYPE = "application/json"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MAX_HOST_CHARS = 350
MAX_PART_CHARS = 80
QUERY_PAGE = 100
NAME_RULES = ("a name is [host/][namespace/]model[:tag]: each part starts with a letter, digit or '_' "
              "and holds letters, digits, '_', '-' and '.' (no '.' in the namespace, ':' only in the host's port); "
              "host up to 350 characters, other parts up to 80")


class InvalidModelName(InvalidRequest):
    """A name that Ollama's rules refuse, or one that could be taken for a model ID."""


@dataclass(frozen=True)
class ModelName:
    """A parsed, canonical (lowercase) model name."""

    host: str
    namespace: str
    model: str
    tag: str

    def __str__(self) -> str:
        """Return the canonical display form: default host and namespace left out, the tag kept."""
        prefix = ""
        if self.host != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"


def _valid_part(kind: str, text: str) -> bool:
    longest = MAX_HOST_CHARS if kind == "host" else MAX_PART_CHARS
    if not 1 <= len(text) <= longest or not text.isascii():
        return False
    if not (text[0].isalnum() or text[0] == "_"):
        return False
    for char in text[1:]:
        if char.isalnum() or char in "_-":
            continue
        if char == "." and kind != "namespace":
            continue
        if char == ":" and kind == "host":
            continue
        return False
    return True


def parse_name(text: str) -> ModelName:
    """Given `[host/][namespace/]model[:tag]`, return the canonical name; raise InvalidModelName."""
    if not isinstance(text, str) or not text:
        raise InvalidModelName("a model name must be a non-empty string")
    if "@" in text:
        raise InvalidModelName(f"{text!r}: names with a digest (@...) are not supported; use the model ID")
    rest, tag = text, DEFAULT_TAG
    before, sep, after = text.rpartition(":")
    if sep and "/" not in after:  # a ':' followed by '/' is a host's port, not a tag
        rest, tag = before, after
    parts = rest.split("/")
    if len(parts) > 3:
        raise InvalidModelName(f"{text!r} is not a valid model name: {NAME_RULES}")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = parts[-3] if len(parts) == 3 else DEFAULT_HOST
    for kind, part in (("host", host), ("namespace", namespace), ("model", model), ("tag", tag)):
        if not _valid_part(kind, part):
            raise InvalidModelName(f"{text!r} is not a valid model name ({kind} {part!r}): {NAME_RULES}")
    if is_id(model):
        raise InvalidModelName(f"{text!r} would read as a model ID: a name must not be 43 base64url characters")
    return ModelName(host.lower(), namespace.lower(), model.lower(), tag.lower())


def id_of_ref(ref: str) -> str | None:
    """Given a model reference, return the model ID it spells (`ID` or `ID:latest`), else None."""
    if is_id(ref):
        return ref
    if ref.endswith(":" + DEFAULT_TAG) and is_id(ref[: -len(DEFAULT_TAG) - 1]):
        return ref[: -len(DEFAULT_TAG) - 1]
    return None


@dataclass(frozen=True)
class NameBinding:
    """One name record: the name, the model it names, who signed it and when (Unix ms)."""

    name: str
    model_id: str
    record_id: str
    owner_address: str
    created: int


def _binding_of(info: ObjectInfo) -> NameBinding | None:
    """Given a stored item tagged Type=model-name, return its binding, None when malformed."""
    tags: dict[str, str] = {}
    for tag in info.tags:
        tags.setdefault(tag.name.decode("utf-8", "replace"), tag.value.decode("utf-8", "replace"))
    created = tags.get("Created", "")
    if tags.get("Record-Version") != str(NAME_RECORD_VERSION) or not created.isdigit() or len(created) > 16:
        return None
    try:
        name = str(parse_name(tags.get("Name", "")))
    except InvalidModelName:
        return None
    model_id = tags.get("Model", "")
    if name != tags.get("Name") or not is_id(model_id):
        return None  # only canonical names are recorded; anything else was not written by this code
    return NameBinding(name, model_id, info.id, info.owner_address, int(created))


class ModelNames:
    """The name records of one store, as the trusted owners signed them: record, look up, list."""

    def __init__(self, store: InferenceStore, owners: Iterable[str]):
        self.store = store
        self.node_address = address_of(store.signer.owner)
        self.owners = frozenset({self.node_address, *owners})

    def _rank(self, binding: NameBinding) -> tuple[bool, int, str]:
        return (binding.owner_address == self.node_address, binding.created, binding.record_id)

    def _records(self, name: str | None = None) -> list[NameBinding]:
        """Return every well-formed name record of a trusted owner (for one name, or all)."""
        tags = [("Type", [NAME_TYPE])] + ([("Name", [name])] if name is not None else [])
        found: list[NameBinding] = []
        after = None
        while True:
            page = self.store.query(Query(tags=tags, owners=sorted(self.owners), first=QUERY_PAGE, after=after))
            found += [b for b in map(_binding_of, page.items) if b is not None]
            if not page.has_next:
                return found
            after = page.next_cursor

    def lookup(self, name: str) -> NameBinding | None:
        """Given a name (any accepted spelling), return the binding it resolves to, None when unnamed."""
        records = self._records(str(parse_name(name)))
        return max(records, key=self._rank) if records else None

    def bindings(self) -> list[NameBinding]:
        """Return the winning binding of every name, sorted by name."""
        winners: dict[str, NameBinding] = {}
        for binding in self._records():
            held = winners.get(binding.name)
            if held is None or self._rank(binding) > self._rank(held):
                winners[binding.name] = binding
        return [winners[name] for name in sorted(winners)]

    def names_by_model(self) -> dict[str, list[str]]:
        """Return {model ID: [names that resolve to it]}."""
        out: dict[str, list[str]] = {}
        for binding in self.bindings():
            out.setdefault(binding.model_id, []).append(binding.name)
        return out

    def resolve(self, ref: str) -> str:
        """Given a model ID, `ID:latest` or a name, return the model ID; raise ModelNotFound."""
        if not isinstance(ref, str) or not ref:
            raise ModelNotFound("model is required: a model ID or name")
        model_id = id_of_ref(ref)
        if model_id is not None:
            return model_id
        try:
            binding = self.lookup(ref)
        except InvalidModelName:
            raise ModelNotFound(f"model '{ref}' not found: it is neither a model ID (43 base64url "
                                "characters) nor a valid model name") from None
        if binding is None:
            raise ModelNotFound(f"model '{ref}' not found: no model ID, and no name record of this node "
                                "or a trusted owner names it (permastore model name ID NAME)")
        return binding.model_id

    def record(self, name: str, model_id: str) -> NameBinding:
        """Given a name and a model ID, sign (node wallet) and store a name record; return its binding.

        Recording a name that already resolves elsewhere re-points it: the new record is
        the newest of the node wallet's, whose records win.
        """
        canonical = str(parse_name(name))
        if not is_id(model_id):
            raise InvalidRequest(f"{model_id!r} is not a model ID (43 base64url characters)")
        own = [b for b in self._records(canonical) if b.owner_address == self.node_address]
        # Strictly newer than this wallet's last record for the name, whatever the clock says.
        created = max([time.time_ns() // 1_000_000, *(b.created + 1 for b in own)])
        fields = {"type": NAME_TYPE, "version": NAME_RECORD_VERSION, "name": canonical, "model": model_id,
                  "created": created}
        pairs = [("App-Name", APP_NAME), ("Type", NAME_TYPE), ("Record-Version", str(NAME_RECORD_VERSION)),
                 ("Name", canonical), ("Model", model_id), ("Created", str(created))]
        data = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
        info = self.store.put_data(io.BytesIO(data), tags=[Tag.text(k, v) for k, v in pairs],
                                   content_type=CONTENT_TYPE)
        return NameBinding(canonical, model_id, info.id, self.node_address, created)
