"""Models by ID (and by name): store a GGUF file with tags from its header, list models, resolve one for loading.

`ModelCatalog.add` stores the weights once (the store's ANS-104 item, signed by the node
wallet) and tags it with what the GGUF header says. `ModelCatalog.model_id` is the one
resolver of model references (an ID, `ID:latest`, or a name recorded by a trusted owner:
`inference.model_names`); `ModelCatalog.resolve` turns a model ID into a plain file path
of exactly the stored bytes, verified against the ID first. With a trust policy (the
server's), only models the node trusts are listed or resolved.
"""

from __future__ import annotations

import hashlib
import mmap
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import LlamaFileType

from inference.errors import (
    ModelCorrupt,
    ModelNotFound,
    ModelNotTrusted,
    NotAModel,
    UpstreamFailed,
)
from inference.fetching import SourceFetcher
from inference.gguf_header import GGUFError, parse_header
from inference.model_names import InvalidModelName, ModelNames, NameBinding, parse_name
from inference.model_trust import ModelTrust
from inference.store_types import InferenceStore
from inference.template_choice import TemplateChoice, choose_template
from permastore.protocol import ans104
from permastore.protocol.b64url import is_id
from permastore.protocol.deephash import BlobHasher
from permastore.protocol.errors import ProtocolError
from permastore.protocol.tags import Tag
from permastore.store.errors import CorruptChunk
from permastore.store.records import ObjectInfo, Query

GGUF_MAGIC = b"GGUF"
MODEL_TYPE = "model"
MODEL_CONTENT_TYPE = "application/octet-stream"
APP_NAME = "permastore"
READ_BLOCK = 1 << 20
LIST_PAGE = 100
METADATA_CACHE = 64  # GGUF headers kept parsed (a few KB each, the vocabulary's two token texts)


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
    # The named template a model without its own calls for (inference.template_choice).
    template_choice: TemplateChoice | None = None

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
class LocatedModel:
    """A trusted model's file and header, with its verification against the ID (maybe still running)."""

    id: str
    path: Path
    metadata: ModelMetadata
    verified: Future[None]


@dataclass(frozen=True)
class ModelEntry:
    """One stored model as `model list` shows it, with the names that resolve to it."""

    id: str
    size: int
    tags: dict[str, str]
    names: tuple[str, ...] = ()
    created_at: float = 0.0  # when this node stored it (Unix time)


def read_gguf_metadata(path: Path | str) -> ModelMetadata:
    """Given a GGUF file path, return its header metadata; raise NotAModel if it is not GGUF.

    Parsed by inference.gguf_header (gguf-py's GGUFReader maps every tensor and array
    and takes ~10 s on a 262k-token vocabulary; this reads the header only).
    """
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
    if file_type is None:
        quantization = "unknown"
    else:
        try:
            quantization = LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except (ValueError, TypeError):
            quantization = f"type-{file_type}"
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
        template_choice=None if isinstance(template, str) and template else choose_template(fields, tokens),
    )


def _token_text(tokens: Any, token_id: Any) -> str:
    if isinstance(tokens, list) and isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return str(tokens[token_id])
    return ""


def file_sha256(path: Path | str) -> str:
    """Given a file path, return the hex SHA-256 of its bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def tag_dict(info: ObjectInfo) -> dict[str, str]:
    """Given an ObjectInfo, return its tags as {name: value} text (first value wins)."""
    out: dict[str, str] = {}
    for tag in info.tags:
        name = tag.name.decode("utf-8", errors="replace")
        out.setdefault(name, tag.value.decode("utf-8", errors="replace"))
    return out




class ModelCatalog:
    """The models of one store: add, list, resolve by ID (verified once per file), parsed headers.

    Under the server's ModelTrust a model the node does not trust is neither listed nor
    resolved (ModelNotTrusted), so a stranger's upload never reaches llama.cpp; the
    command line's (operator) trust allows every model and approves what it adds.
    """

    def __init__(self, store: InferenceStore, fetcher: SourceFetcher, trust: ModelTrust):
        self.store = store
        self.fetcher = fetcher
        self.trust = trust
        self.names = ModelNames(store, trust.owners)
        # Verified (model ID, file identity) pairs: weights are immutable, so a file that
        # passed once and has not been replaced need not be read again.
        self._verified: set[tuple[str, tuple]] = set()
        self._checks: dict[tuple[str, tuple], Future[None]] = {}
        self._metadata: dict[str, ModelMetadata] = {}
        self._lock = threading.Lock()
        self._verifier: ThreadPoolExecutor | None = None

    # -- adding and listing

    def find_by_hash(self, sha256: str) -> str | None:
        """Return the ID of a model this node already stored with these exact bytes, if any."""
        owner = self.store.signer.owner
        page = self.store.query(Query(tags=[("Type", [MODEL_TYPE]), ("Model-SHA256", [sha256])], first=10))
        for info in page.items:
            if info.owner == owner and info.data_complete:
                return info.id
        return None

    def add(self, path: Path | str, progress: Any = None, name: str | None = None) -> str:
        """Given a GGUF file path, store the weights with header tags and return the model ID.

        Adding the same bytes again returns the first ID instead of signing a second item.
        With a name, the name is checked first and recorded for the ID (see `name`).
        """
        if name is not None:
            parse_name(name)  # a bad name fails before gigabytes are stored
        path = Path(path)
        if not path.is_file():
            raise NotAModel(f"{path}: no such file")
        metadata = read_gguf_metadata(path)
        sha256 = file_sha256(path)
        model_id = self.find_by_hash(sha256)
        if model_id is None:
            pairs = [("App-Name", APP_NAME), ("Type", MODEL_TYPE), *metadata.tags(),
                     ("Model-SHA256", sha256), ("File-Name", path.name)]
            tags = [Tag.text(name, value) for name, value in pairs]
            with open(path, "rb") as stream:
                model_id = self.store.put_data(stream, tags=tags, content_type=MODEL_CONTENT_TYPE,
                                               progress=progress).id
        self.trust.approve(model_id, "added")
        if name is not None:
            self.name(model_id, name)
        return model_id

    def name(self, model_id: str, name: str) -> NameBinding:
        """Given a stored model's ID and a name, record the name for it (signed by the node wallet).

        The model must be stored here and be a model this node trusts (the command line may
        name any stored model, which approves it, as `run` does); a name already in use is
        re-pointed to this model.
        """
        if not is_id(model_id):
            raise InvalidModelName(f"{model_id!r} is not a model ID (43 base64url characters)")
        parse_name(name)
        info = self.store.info(model_id)
        if info is None or not info.data_complete:
            raise ModelNotFound(f"model {model_id} is not stored here")
        if tag_dict(info).get("Type") != MODEL_TYPE:
            raise NotAModel(f"{model_id} is not tagged Type=model")
        if not self.trust.allows(info):
            raise ModelNotTrusted(f"model {model_id} is not trusted here; add it (permastore model add) first")
        binding = self.names.record(name, model_id)
        if self.trust.operator:
            self.trust.approve(model_id, "named")  # the operator chose this model by naming it
        return binding

    def model_id(self, ref: str) -> str:
        """Given a model reference (ID, `ID:latest`, or name), return the model ID; raise ModelNotFound."""
        return self.names.resolve(ref)

    def list(self) -> list[ModelEntry]:
        """Return every stored object tagged Type=model that this node trusts, newest first, with its names."""
        names = self.names.names_by_model()
        entries: list[ModelEntry] = []
        after = None
        while True:
            page = self.store.query(Query(tags=[("Type", [MODEL_TYPE])], first=LIST_PAGE, after=after))
            entries += [ModelEntry(info.id, info.data_size, tag_dict(info), tuple(names.get(info.id, ())),
                                   info.created_at)
                        for info in page.items if self.trust.allows(info)]
            if not page.has_next:
                return entries
            after = page.next_cursor

    # -- resolving

    def resolve(self, model_id: str, verify: bool = True) -> Path:
        """Given a model ID, return the store's file path of exactly its bytes, verified.

        Not stored here: read through the fetcher's source (which stores what it serves).
        Verification reads every chunk through the store, which checks each chunk's hash.
        """
        path = self.locate(model_id)
        if verify:
            self.check(model_id, path).result()
        return path

    def locate(self, model_id: str) -> Path:
        """Given a model ID, return its file path, fetched if needed and trusted, not yet verified."""
        if not isinstance(model_id, str) or not is_id(model_id):
            raise ModelNotFound(f"{model_id!r} is not a valid ID (43 base64url characters)")
        info = self.fetcher.held_info(
            self.store, model_id,
            missing=lambda why: ModelNotFound(f"model {model_id} is {why}"),
            failed=lambda why: UpstreamFailed(f"model {model_id} could not be fetched and verified: {why}"))
        if info is None:
            raise ModelNotFound(f"model {model_id} is not stored here (no upstream given)")
        if not info.data_complete:
            raise ModelNotFound(f"model {model_id} is stored without its data yet")
        if tag_dict(info).get("Type") != MODEL_TYPE:
            raise NotAModel(f"{model_id} is not tagged Type=model")
        if not self.trust.allows(info):
            raise ModelNotTrusted(
                f"model {model_id} is not trusted here: its owner {info.owner_address} is not on this node's "
                "trust list (serve --trust-model-owner) and the operator has not added or pulled it")
        # The store's own chunk pass is skipped: verification below also checks the signature.
        return Path(self.store.object_path(model_id, verify=False))

    def check(self, model_id: str, path: Path) -> Future[None]:
        """Return the verification of a located model: done at once when this file passed before.

        Started on the catalog's verifier thread, so a caller can load the file meanwhile
        and wait for the result before answering with anything computed from it.
        """
        key = (model_id, _file_identity(path))
        with self._lock:
            if key in self._verified:
                done: Future[None] = Future()
                done.set_result(None)
                return done
            running = self._checks.get(key)
            if running is None:
                if self._verifier is None:
                    self._verifier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-verifier")
                running = self._verifier.submit(self._verify, model_id, key)
                self._checks[key] = running
            return running

    def _verify(self, model_id: str, key: tuple[str, tuple]) -> None:
        try:
            _verify_chunks(self.store, model_id)
            with self._lock:
                self._verified.add(key)
        finally:
            with self._lock:
                self._checks.pop(key, None)

    def metadata(self, model_id: str) -> tuple[Path, ModelMetadata]:
        """Given a model ID, return its verified file path and GGUF metadata (parsed once)."""
        located = self.get(model_id)
        located.verified.result()
        return located.path, located.metadata

    def header_fields(self, model_id: str) -> dict[str, Any]:
        """Given a model ID, return every key/value of its verified file's GGUF header (arrays as None)."""
        path, _ = self.metadata(model_id)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return dict(parse_header(buf).fields)

    def get(self, model_id: str) -> LocatedModel:
        """Given a model ID, return its file, header and verification (running, or done once per file).

        Whoever answers with anything computed from the file waits for `verified` first;
        loading and planning may go on meanwhile.
        """
        path = self.locate(model_id)
        verified = self.check(model_id, path)
        return LocatedModel(model_id, path, self._metadata_of(model_id, path), verified)

    def _metadata_of(self, model_id: str, path: Path) -> ModelMetadata:
        with self._lock:
            metadata = self._metadata.get(model_id)
        if metadata is None:
            metadata = read_gguf_metadata(path)
            with self._lock:
                if len(self._metadata) >= METADATA_CACHE:
                    self._metadata.pop(next(iter(self._metadata)))
                self._metadata[model_id] = metadata
        return metadata

    def close(self) -> None:
        """Stop the verifier thread (a verification in progress finishes first)."""
        verifier, self._verifier = self._verifier, None
        if verifier is not None:
            verifier.shutdown(wait=True)


def _file_identity(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _verify_chunks(store: InferenceStore, model_id: str) -> None:
    """Read the object chunk by chunk (the store checks each chunk's hash) and check the
    signature over the data's deep hash, so the bytes are exactly the ones the ID names."""
    hasher = BlobHasher()
    try:
        for block in store.read(model_id):
            hasher.update(block)
        info = store.info(model_id)
        if info is not None and info.kind == "item":
            header = ans104.parse_header(store.raw_header(model_id))
            ans104.verify_header(header, hasher.digest())
    except CorruptChunk as exc:
        raise ModelCorrupt(f"model {model_id} failed verification: {exc}") from None
    except ProtocolError as exc:
        raise ModelCorrupt(f"model {model_id} does not match its ID: {exc}") from None
