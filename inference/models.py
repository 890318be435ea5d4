"""Models by ID: store a GGUF file with tags from its header, list models, resolve one for loading.

`add_model` stores the weights once (the store's ANS-104 item, signed by the node
wallet) and tags it with what the GGUF header says. `resolve_model` turns a model ID
into a plain file path of exactly the stored bytes, verified against the ID first.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from permastore.protocol.tags import Tag

from inference.errors import ModelCorrupt, ModelNotFound, NotAModel, UpstreamFailed

GGUF_MAGIC = b"GGUF"
MODEL_TYPE = "model"
MODEL_CONTENT_TYPE = "application/octet-stream"
APP_NAME = "permastore"
READ_BLOCK = 1 << 20
LIST_PAGE = 100


@dataclass(frozen=True)
class ModelMetadata:
    """What the GGUF header says about a model."""

    architecture: str
    name: str
    parameter_count: int
    quantization: str
    context_length: int | None
    chat_template: str | None
    bos_token: str
    eos_token: str

    def tags(self) -> list[tuple[str, str]]:
        """Return the model's descriptive tags as (name, value) pairs."""
        pairs = [
            ("Model-Format", "gguf"),
            ("Model-Architecture", self.architecture),
            ("Model-Name", self.name),
            ("Model-Parameter-Count", str(self.parameter_count)),
            ("Model-Quantization", self.quantization),
            ("Model-Chat-Template", "true" if self.chat_template else "false"),
        ]
        if self.context_length is not None:
            pairs.append(("Model-Context-Length", str(self.context_length)))
        return pairs


@dataclass(frozen=True)
class ModelEntry:
    """One stored model as `model list` shows it."""

    id: str
    size: int
    tags: dict


def read_gguf_metadata(path) -> ModelMetadata:
    """Given a GGUF file path, return its header metadata; raise NotAModel if it is not GGUF.

    Parsed by inference.gguf_header (gguf-py's GGUFReader maps every tensor and array
    and takes ~10 s on a 262k-token vocabulary; this reads the header only).
    """
    import mmap

    from gguf import LlamaFileType

    from inference.gguf_header import GGUFError, parse_header

    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise NotAModel(f"{path.name} is not a GGUF file (bad magic)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                header = parse_header(buf, keep_arrays=("tokenizer.ggml.tokens",))
    except GGUFError as exc:
        raise NotAModel(f"{path.name}: unreadable GGUF header: {exc}") from None
    fields = header.fields
    arch = fields.get("general.architecture") or "unknown"
    params = fields.get("general.parameter_count")
    if not isinstance(params, int) or params <= 0:
        params = sum(tensor.n_elements for tensor in header.tensors)
    file_type = fields.get("general.file_type")
    try:
        quantization = LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (ValueError, TypeError):
        quantization = "unknown" if file_type is None else f"type-{file_type}"
    context = fields.get(f"{arch}.context_length")
    tokens = fields.get("tokenizer.ggml.tokens") or []
    template = fields.get("tokenizer.chat_template")
    return ModelMetadata(
        architecture=str(arch),
        name=str(fields.get("general.name") or path.stem),
        parameter_count=int(params),
        quantization=quantization,
        context_length=int(context) if isinstance(context, int) else None,
        chat_template=template if isinstance(template, str) and template else None,
        bos_token=_token_text(tokens, fields.get("tokenizer.ggml.bos_token_id")),
        eos_token=_token_text(tokens, fields.get("tokenizer.ggml.eos_token_id")),
    )


def _token_text(tokens, token_id) -> str:
    if isinstance(tokens, list) and isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return str(tokens[token_id])
    return ""


def file_sha256(path) -> str:
    """Given a file path, return the hex SHA-256 of its bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def tag_dict(info) -> dict:
    """Given an ObjectInfo, return its tags as {name: value} text (first value wins)."""
    out: dict[str, str] = {}
    for tag in info.tags:
        name = tag.name.decode("utf-8", errors="replace")
        out.setdefault(name, tag.value.decode("utf-8", errors="replace"))
    return out


def find_model_by_hash(store, sha256: str) -> str | None:
    """Return the ID of a model this node already stored with these exact bytes, if any."""
    from permastore.store.records import Query

    owner = store.signer.owner
    page = store.query(Query(tags=[("Type", [MODEL_TYPE]), ("Model-SHA256", [sha256])], first=10))
    for info in page.items:
        if info.owner == owner and info.data_complete:
            return info.id
    return None


def add_model(store, path, progress=None) -> str:
    """Given a store and a GGUF file path, store the weights with header tags and return the model ID.

    Adding the same bytes again returns the first ID instead of signing a second item.
    """
    path = Path(path)
    if not path.is_file():
        raise NotAModel(f"{path}: no such file")
    metadata = read_gguf_metadata(path)
    sha256 = file_sha256(path)
    existing = find_model_by_hash(store, sha256)
    if existing:
        return existing
    pairs = [
        ("App-Name", APP_NAME),
        ("Type", MODEL_TYPE),
        *metadata.tags(),
        ("Model-SHA256", sha256),
        ("File-Name", path.name),
    ]
    tags = [Tag.text(name, value) for name, value in pairs]
    with open(path, "rb") as stream:
        info = store.put_data(stream, tags=tags, content_type=MODEL_CONTENT_TYPE, progress=progress)
    return info.id


def list_models(store) -> list[ModelEntry]:
    """Return every stored object tagged Type=model, newest first."""
    from permastore.store.records import Query

    entries: list[ModelEntry] = []
    after = None
    while True:
        page = store.query(Query(tags=[("Type", [MODEL_TYPE])], first=LIST_PAGE, after=after))
        entries += [ModelEntry(info.id, info.data_size, tag_dict(info)) for info in page.items]
        if not page.has_next:
            return entries
        after = page.next_cursor


# Verified (model ID, file identity) pairs in this OS process: weights are immutable,
# so a file that passed once and has not been replaced need not be read again.
_verified: set[tuple[str, tuple]] = set()
_verified_lock = threading.Lock()


def _file_identity(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def resolve_model(store, model_id: str, source=None, verify: bool = True) -> Path:
    """Given a model ID, return the store's file path of exactly its bytes, verified.

    Not stored here: read it through `source` (a permastore.sources DataSource that
    stores what it serves, e.g. ReadThroughSource over the gateway's upstreams).
    Verification reads every chunk through the store, which checks each chunk's hash.
    """
    from permastore.protocol.b64url import is_id

    if not isinstance(model_id, str) or not is_id(model_id):
        raise ModelNotFound(f"{model_id!r} is not a valid ID (43 base64url characters)")
    info = store.info(model_id)
    if (info is None or not info.data_complete) and source is not None:
        _fetch_through(source, model_id)
        info = store.info(model_id)
    if info is None:
        raise ModelNotFound(f"model {model_id} is not stored here" + ("" if source else " (no upstream given)"))
    if not info.data_complete:
        raise ModelNotFound(f"model {model_id} is stored without its data yet")
    if tag_dict(info).get("Type") != MODEL_TYPE:
        raise NotAModel(f"{model_id} is not tagged Type=model")
    # The store's own chunk pass is skipped: _verify_chunks below also checks the signature.
    path = Path(store.object_path(model_id, verify=False))
    key = (model_id, _file_identity(path))
    if verify and key not in _verified:
        _verify_chunks(store, model_id)
        with _verified_lock:
            _verified.add(key)
    return path


def _fetch_through(source, model_id: str) -> None:
    """Have a storing source (ReadThroughSource) fetch, verify and store the whole object."""
    from permastore.store.errors import NotFound, StoreError

    try:
        stream = source.get(model_id)  # a read-through source stores everything before serving a byte
        stream.close()
    except NotFound:
        raise ModelNotFound(f"model {model_id} is neither stored here nor upstream") from None
    except StoreError as exc:  # sources.UpstreamError: upstreams failed or served unverifiable bytes
        raise UpstreamFailed(f"model {model_id} could not be fetched and verified: {exc}") from None


def _verify_chunks(store, model_id: str) -> None:
    """Read the object chunk by chunk (the store checks each chunk's hash) and check the
    signature over the data's deep hash, so the bytes are exactly the ones the ID names."""
    from permastore.protocol import ans104
    from permastore.protocol.deephash import BlobHasher
    from permastore.protocol.errors import ProtocolError
    from permastore.store.errors import CorruptChunk

    hasher = BlobHasher()
    try:
        for block in store.read(model_id):
            hasher.update(block)
        info = store.info(model_id)
        if info.kind == "item":
            header = ans104.parse_header(store.raw_header(model_id))
            ans104.verify_header(header, hasher.digest())
    except CorruptChunk as exc:
        raise ModelCorrupt(f"model {model_id} failed verification: {exc}") from None
    except ProtocolError as exc:
        raise ModelCorrupt(f"model {model_id} does not match its ID: {exc}") from None
