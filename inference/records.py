"""Process, Message and Result records: canonical JSON in ANS-104 items signed by the node wallet.

Each record is one data item: its data is the record as canonical JSON (sorted keys,
no spaces, UTF-8), its tags make it findable (AO-style: Data-Protocol, Variant, Type,
plus Process / Message / Nonce / Hash-Chain ...). Tags are an index; the JSON is the
record, and `load_record` checks the two agree.

Hash chain (as AO's scheduler orders messages): chain(0) is the process ID's 32 bytes,
chain(n) = sha256(chain(n-1) || sha256(canonical message n without its chain)).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Generic, Literal, TypeVar, Union, overload

from inference.errors import RecordInvalid, RecordNotFound
from inference.fetching import SourceFetcher
from inference.models import tag_dict
from inference.store_types import InferenceStore
from permastore.protocol import ans104, b64url
from permastore.protocol.tags import Tag
from permastore.protocol.wallet import address_of
from permastore.store.errors import CorruptChunk
from permastore.store.records import ObjectInfo, Query

DATA_PROTOCOL = "ao"
VARIANT = "ao.TN.1"
APP_NAME = "permastore-llama"
RECORD_VERSION = 1
CONTENT_TYPE = "application/json"
SEED_POLICY = "message-seed-else-message-id"
MAX_RECORD_BYTES = 16 << 20  # a record is prompts and token IDs, never weights
MAX_TOKEN_ID = 1 << 31  # llama_token is int32


def canonical_json(value: Any) -> bytes:
    """Given a JSON-able value, return its canonical bytes (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def initial_chain(process_id: str) -> bytes:
    """Given a process ID, return the hash chain value before its first message."""
    return b64url.parse_id(process_id)


def next_chain(previous: bytes, content_hash: bytes) -> bytes:
    """Given the previous chain value and a message's content hash, return the message's chain value."""
    return hashlib.sha256(previous + content_hash).digest()


def seed_from_message_id(message_id: str) -> int:
    """Given a message ID, return the seed a call without one uses (31 bits of the ID)."""
    return int.from_bytes(b64url.parse_id(message_id)[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class ProcessRecord:
    """A spawned llama process: the model and every setting that shapes its output."""

    model: str
    engine: dict[str, Any]  # engine identity (versions, build, CPU features)
    settings: dict[str, Any]  # EngineSettings.to_json()
    chat_template: str | None  # template name, None: raw prompts only
    chat_template_sha256: str | None
    system_prompt: str | None
    seed_policy: str = SEED_POLICY
    # Added in record version 1 without a bump: present only when the node chose the template
    # from the GGUF header ({by, template, reason}; template None: none fitted, raw prompts only).
    chat_template_chosen: dict[str, Any] | None = None
    request: str | None = None  # ID of the caller's signed item that asked for it (an AO spawn)

    type: ClassVar[Literal["Process"]] = "Process"

    def tags(self) -> list[tuple[str, str]]:
        pairs = [("Model", self.model), ("Seed-Policy", self.seed_policy)]
        if self.chat_template:
            pairs.append(("Chat-Template", self.chat_template))
        return pairs + _request_tag(self.request)


@dataclass(frozen=True)
class MessageRecord:
    """One call into a process: who, what prompt, which sampler, what fee, where in order."""

    process: str
    caller: str
    nonce: int
    input: dict[str, Any]  # {"prompt": text} or {"messages": [{role, content}, ...]}
    rendered_prompt: str  # the exact text tokenized
    parse_special: bool  # control-token text parsed as tokens (chat templates)
    sampling: dict[str, Any]  # SamplingParams.to_json(); seed None: derived from the message ID
    fee: int
    previous: str | None  # ID of the message with nonce - 1 (None for nonce 1): the chain walks by ID
    hash_chain: str  # b64url of chain(nonce)
    request: str | None = None  # ID of the caller's signed item this call answers (an AO message)

    type: ClassVar[Literal["Message"]] = "Message"

    def content_hash(self) -> bytes:
        """Return sha256 of this message's canonical JSON without its own chain value."""
        body = record_json(self)
        del body["hash_chain"]
        return hashlib.sha256(canonical_json(body)).digest()

    def tags(self) -> list[tuple[str, str]]:
        return [
            ("Process", self.process),
            ("Caller", self.caller),
            ("Nonce", str(self.nonce)),
            ("Hash-Chain", self.hash_chain),
            ("Fee", str(self.fee)),
            *_request_tag(self.request),
        ]


@dataclass(frozen=True)
class ResultRecord:
    """What a message produced: the output text and its token IDs, hashed for comparison."""

    message: str
    process: str
    nonce: int
    seed: int  # the seed actually used
    text: str
    token_ids: list[int]
    token_hash: str  # engine.token_hash(token_ids)
    prompt_tokens: int
    prompt_token_hash: str
    completion_tokens: int
    finish_reason: str
    timings: dict[str, Any]  # informative only; never compared

    type: ClassVar[Literal["Result"]] = "Result"

    def tags(self) -> list[tuple[str, str]]:
        return [
            ("Process", self.process),
            ("Message", self.message),
            ("Nonce", str(self.nonce)),
            ("Token-Hash", self.token_hash),
        ]


def _request_tag(request: str | None) -> list[tuple[str, str]]:
    return [("Request", request)] if request is not None else []


Record = Union[ProcessRecord, MessageRecord, ResultRecord]  # noqa: UP007 - a runtime alias
NULLABLE_FIELDS = ("chat_template", "chat_template_sha256", "system_prompt", "previous", "chat_template_chosen",
                   "request")
# Fields added later: left out of the JSON while None, so records written before these fields
# existed keep their exact bytes (and hash, and signature).
OPTIONAL_FIELDS = ("chat_template_chosen", "request")
RECORD_TYPES = {cls.type: cls for cls in (ProcessRecord, MessageRecord, ResultRecord)}


RecordT = TypeVar("RecordT", bound=Record, covariant=True)  # StoredRecord[ResultRecord] is a StoredRecord[Record]


@dataclass(frozen=True)
class StoredRecord(Generic[RecordT]):
    """A record read back from the store, with its item ID and owner."""

    id: str
    owner_address: str
    record: RecordT


def record_json(record: Record) -> dict[str, Any]:
    """Given a record, return the JSON object stored as its data."""
    # Shallow: the dict is only serialised, and asdict's deep copy of token lists costs ~0.4 ms.
    body = {field.name: getattr(record, field.name) for field in fields(record)
            if not (field.name in OPTIONAL_FIELDS and getattr(record, field.name) is None)}
    body["type"] = record.type
    body["version"] = RECORD_VERSION
    return body


def record_tags(record: Record) -> list[Tag]:
    """Given a record, return every tag of its data item."""
    pairs = [
        ("Data-Protocol", DATA_PROTOCOL),
        ("Variant", VARIANT),
        ("App-Name", APP_NAME),
        ("Type", record.type),
        ("Record-Version", str(RECORD_VERSION)),
        *record.tags(),
    ]
    return [Tag.text(name, value) for name, value in pairs]


@dataclass(frozen=True)
class SignedRequest:
    """A caller's signed ANS-104 item that asks for a record (an AO spawn or message): its ID and bytes."""

    id: str
    item: bytes


@dataclass(frozen=True)
class SignedRecord:
    """A record signed by the node wallet but maybe not stored yet: its ID is final."""

    id: str
    item: bytes


@overload
def parse_record(data: bytes, expected_type: Literal["Process"]) -> ProcessRecord: ...
@overload
def parse_record(data: bytes, expected_type: Literal["Message"]) -> MessageRecord: ...
@overload
def parse_record(data: bytes, expected_type: Literal["Result"]) -> ResultRecord: ...
@overload
def parse_record(data: bytes, expected_type: str | None = None) -> Record: ...


def parse_record(data: bytes, expected_type: str | None = None) -> Record:
    """Given record bytes, return the record object or raise RecordInvalid."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordInvalid(f"record is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RecordInvalid("record is not a JSON object")
    kind = body.pop("type", None)
    version = body.pop("version", None)
    cls = RECORD_TYPES.get(kind)
    if cls is None:
        raise RecordInvalid(f"unknown record type {kind!r}")
    if expected_type and kind != expected_type:
        raise RecordInvalid(f"expected a {expected_type} record, found a {kind} record")
    if version != RECORD_VERSION:
        raise RecordInvalid(f"unsupported {kind} record version {version!r}")
    names = {f.name for f in fields(cls)}
    missing, extra = names - set(body) - set(OPTIONAL_FIELDS), set(body) - names
    if missing or extra:
        raise RecordInvalid(f"{kind} record fields wrong: missing {sorted(missing)}, unexpected {sorted(extra)}")
    if any(name in body and body[name] is None for name in OPTIONAL_FIELDS):
        raise RecordInvalid(f"{kind} record: optional fields are left out, never null")
    record = cls(**body)
    _check_shapes(record)
    return record


def _check_shapes(record: Record) -> None:
    """Raise RecordInvalid when a field has the wrong JSON type (a record is input like any other)."""
    expect = {
        "model": str, "engine": dict, "settings": dict, "process": str, "caller": str, "nonce": int,
        "input": dict, "rendered_prompt": str, "parse_special": bool, "sampling": dict, "fee": int,
        "hash_chain": str, "message": str, "seed": int, "text": str, "token_ids": list, "token_hash": str,
        "prompt_tokens": int, "prompt_token_hash": str, "completion_tokens": int, "finish_reason": str,
        "timings": dict, "seed_policy": str, "previous": str, "chat_template_chosen": dict, "request": str,
    }
    for field in fields(record):
        value = getattr(record, field.name)
        wanted = expect.get(field.name)
        if wanted is None or (value is None and field.name in NULLABLE_FIELDS):
            continue
        if wanted is int and isinstance(value, bool):
            raise RecordInvalid(f"{record.type} field {field.name} must be an integer")
        if not isinstance(value, wanted):
            raise RecordInvalid(f"{record.type} field {field.name} must be {wanted.__name__}")
    chosen = record.chat_template_chosen if isinstance(record, ProcessRecord) else None
    if chosen is not None and not (set(chosen) == {"by", "template", "reason"} and isinstance(chosen["by"], str)
                                   and isinstance(chosen["reason"], str)
                                   and (chosen["template"] is None or isinstance(chosen["template"], str))):
        raise RecordInvalid("Process field chat_template_chosen must be {by, template, reason} strings")
    if isinstance(record, ProcessRecord) and chosen is not None and chosen["template"] != record.chat_template:
        raise RecordInvalid("Process field chat_template_chosen names another template than chat_template")
    request = getattr(record, "request", None)
    if request is not None and not b64url.is_id(request):
        raise RecordInvalid(f"{record.type} field request must be an item ID")
    if isinstance(record, ResultRecord) and not all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < MAX_TOKEN_ID for t in record.token_ids
    ):
        raise RecordInvalid(f"Result field token_ids must be a list of integers in 0..{MAX_TOKEN_ID - 1}")


def _check_is_record(record_id: str, info: ObjectInfo) -> None:
    """Raise RecordInvalid, saying what the object is, unless its tags make it an inference record."""
    tags = tag_dict(info)
    if tags.get("App-Name") == APP_NAME and tags.get("Type") in RECORD_TYPES:
        return
    if tags.get("Type") == "model":
        what = f"a model ({tags.get('Model-Name', 'unnamed')})"
    elif tags.get("Type") == "manifest":
        what = "a path manifest"
    else:
        kind = "a transaction" if info.kind == "tx" else "stored data"
        what = f"{kind} ({info.content_type or 'no Content-Type'}, {info.data_size} bytes)"
    raise RecordInvalid(f"{record_id} is not an inference record (a Process, Message or Result): it is {what}")


def _check_tags(record_id: str, info: ObjectInfo, record: Record) -> None:
    tags = tag_dict(info)
    for name, value in [("Type", record.type), *record.tags()]:
        if tags.get(name) != value:
            raise RecordInvalid(f"record {record_id}: tag {name}={tags.get(name)!r} disagrees with its data ({value!r})")


class RecordStore:
    """The records of one store: sign with its wallet, store, load (fetched through upstreams), find by tags."""

    def __init__(self, store: InferenceStore, fetcher: SourceFetcher):
        self.store = store
        self.fetcher = fetcher
        self.node_address = address_of(store.signer.owner)  # the signer of every record written here

    def sign(self, record: Record) -> SignedRecord:
        """Given a record, return it signed by the store's wallet (nothing is written).

        Signing is the slow part of a record that a call must wait for (its ID seeds the
        call); storing it durably can then happen while the model runs.
        """
        signer = self.store.signer
        tags = [*record_tags(record), Tag.text("Content-Type", CONTENT_TYPE)]
        item = ans104.build_item(signer, canonical_json(record_json(record)), tags)
        # An item's ID is the SHA-256 of its signature, which follows the 2-byte signature type.
        signature = item[2 : 2 + ans104.SIGNATURE_TYPES[signer.signature_type].signature_size]
        return SignedRecord(b64url.encode(hashlib.sha256(signature).digest()), item)

    def put(self, signed: SignedRecord) -> str:
        """Given a signed record, store it durably (the store checks the signature again); return its ID."""
        info = self.store.put_item(signed.item)
        if info.id != signed.id:  # cannot happen unless the item bytes were altered
            raise RecordInvalid(f"stored record {info.id} is not the signed record {signed.id}")
        return info.id

    def write(self, record: Record) -> str:
        """Given a record, sign and store it as a data item; return its ID."""
        return self.put(self.sign(record))

    @overload
    def load(self, record_id: str, expected_type: Literal["Process"]) -> StoredRecord[ProcessRecord]: ...
    @overload
    def load(self, record_id: str, expected_type: Literal["Message"]) -> StoredRecord[MessageRecord]: ...
    @overload
    def load(self, record_id: str, expected_type: Literal["Result"]) -> StoredRecord[ResultRecord]: ...
    @overload
    def load(self, record_id: str, expected_type: str | None = None) -> StoredRecord[Record]: ...

    def load(self, record_id: str, expected_type: str | None = None) -> StoredRecord[Record]:
        """Given a record ID, return the stored record; raise RecordNotFound or RecordInvalid.

        The store verified the item's signature when it was stored and checks chunk hashes
        on read; here the record's tags must also agree with its JSON. A record not stored
        here is read through the fetcher's source, if any.
        """
        if not isinstance(record_id, str) or not b64url.is_id(record_id):
            raise RecordNotFound(f"{record_id!r} is not a valid record ID (43 base64url characters)")
        info = self.fetcher.held_info(
            self.store, record_id,
            missing=lambda why: RecordNotFound(f"record {record_id} is {why}"),
            failed=lambda why: RecordNotFound(f"record {record_id} could not be fetched and verified: {why}"))
        if info is None or not info.data_complete:
            raise RecordNotFound(f"record {record_id} is not stored here")
        _check_is_record(record_id, info)
        if info.data_size > MAX_RECORD_BYTES:
            raise RecordInvalid(f"{record_id} is {info.data_size} bytes: too large to be a record")
        try:
            data = b"".join(self.store.read(record_id))
        except CorruptChunk as exc:
            raise RecordInvalid(f"record {record_id} is corrupt: {exc}") from None
        record = parse_record(data, expected_type)
        _check_tags(record_id, info, record)
        return StoredRecord(record_id, info.owner_address, record)

    def query_ids(self, tags: list[tuple[str, list[str]]], limit: int | None = None,
                  owners: list[str] | None = None) -> list[str]:
        """Given tag filters (and optionally owner addresses), return the IDs of every matching item (store order)."""
        ids: list[str] = []
        after = None
        while True:
            page = self.store.query(Query(tags=tags, owners=owners or [], first=min(100, limit or 100), after=after))
            ids += [info.id for info in page.items]
            if not page.has_next or (limit is not None and len(ids) >= limit):
                return ids[:limit] if limit is not None else ids
            after = page.next_cursor

    def find_result_for(self, message_id: str, owner: str) -> str | None:
        """Given a message ID and the address that writes its process's records, return its Result's ID, if stored."""
        # Security: anyone can post an item tagged Message=<id>; only a Result signed by the owner counts.
        ids = self.query_ids([("Type", [ResultRecord.type]), ("Message", [message_id])], limit=1, owners=[owner])
        return ids[0] if ids else None

    def message_ids_of(self, process_id: str, owner: str | None = None) -> list[str]:
        """Given a process ID (and optionally the signer), return the IDs of every Message record that names it."""
        return self.query_ids([("Type", [MessageRecord.type]), ("Process", [process_id])],
                              owners=[owner] if owner else None)

    def newest_message_id(self, process_id: str, owner: str) -> str | None:
        """Return the ID of the newest Message naming the process that `owner` signed."""
        ids = self.query_ids([("Type", [MessageRecord.type]), ("Process", [process_id])], limit=1, owners=[owner])
        return ids[0] if ids else None
