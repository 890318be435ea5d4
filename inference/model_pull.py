"""Pull a model from peers: resolve it (ID, or a name the peers list), fetch it proven, check it, adopt it.

One mechanism for `POST /api/pull` (gateway.inference_api.ollama_pull: Ollama's status
stream) and `permastore model pull` (inference.model_pull_cli):

    puller = ModelPuller(inference, fetcher)        # fetcher: permastore.sources.engine.Fetcher
    session = puller.start(model_id)                # planned: a peer has it, its header says Type=model
    for held, total in puller.follow(session): ...  # bytes proven and durable so far
    puller.check(model_id)                          # `model add`'s checks on the stored file
    puller.adopt(model_id, name)                    # approved here; a name recorded (node wallet)

The fetch engine proves every chunk against the signed data root (an item is checked whole
against its signature), from many peers at once, resumable. `check` then runs what
`model add` checks: every chunk and the signature against the ID, a readable GGUF header,
and the owner's `Model-SHA256` tag (when present) against the file's SHA-256.

Trust: adopting approves the model whoever signed it, a stranger included, because the
operator asked for it by ID or name (as `permastore run ID` approves what it runs); the
gateway lets only callers on this machine pull what the node does not hold and trust.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inference.context import Inference
from inference.errors import InferenceError, ModelCorrupt, ModelNotFound, NotAModel, UpstreamFailed
from inference.models import MODEL_TYPE, file_sha256, read_gguf_metadata, tag_dict
from permastore.protocol import ans104
from permastore.protocol.errors import ProtocolError
from permastore.store.errors import NotFound, StoreError

POLL_S = 0.25  # how often a running fetch reports progress
PLAN_TIMEOUT_S = 120.0  # headers, leaf lists, offsets: each asked with its own deadline


def _type_of(tags: list) -> str | None:
    for tag in tags:
        if tag.name == b"Type":
            return tag.value.decode("utf-8", "replace")
    return None


def failure(model_id: str, exc: BaseException) -> InferenceError:
    """Given what a fetch raised, return the InferenceError to report (its status: 404, 502, ...)."""
    if isinstance(exc, InferenceError):
        return exc
    if isinstance(exc, NotFound):
        return ModelNotFound(f"model '{model_id}' not found on this node or its peers")
    if isinstance(exc, (StoreError, ProtocolError, ValueError)):
        return UpstreamFailed(f"model {model_id} could not be fetched and verified: {exc} (pull again to resume)")
    return UpstreamFailed(f"model {model_id} could not be fetched: {type(exc).__name__}")


class ModelPuller:
    """Given an inference context and the node's fetcher (None: no peers), pull models into its store."""

    def __init__(self, inference: Inference, fetcher: Any):
        self.inference = inference
        self.store = inference.store
        self.fetcher = fetcher

    @property
    def enabled(self) -> bool:
        return self.fetcher is not None

    def urls(self) -> list[str]:
        return self.fetcher.peers.urls() if self.fetcher is not None else []

    def held(self, model_id: str) -> bool:
        info = self.store.info(model_id)
        return info is not None and info.data_complete

    def start(self, model_id: str) -> Any:
        """Given a model ID not held, start (or join) its fetch; return the session once planned.

        Raises ModelNotFound when no peer has it, NotAModel when its verified header is not
        tagged Type=model (the fetch is stopped before its data), UpstreamFailed otherwise.
        """
        if self.fetcher is None:
            raise ModelNotFound(f"model '{model_id}' not found on this node (no peer configured)")
        session = self.fetcher.session(model_id, bounded=False)
        if not session.planned.wait(PLAN_TIMEOUT_S):
            session.stop("no plan in time")
            raise UpstreamFailed(f"model {model_id}: the peers did not say how to fetch it in {PLAN_TIMEOUT_S:g} s")
        if session.error is not None and session.done.is_set():
            raise failure(model_id, session.error)
        kind = self._planned_type(session)
        if kind is not None and kind != MODEL_TYPE:
            session.stop("not a model")  # Security: a pull stores models only, not whatever the ID is
            raise NotAModel(f"{model_id} is not tagged Type=model (its signed header says Type={kind!r})")
        return session

    def _planned_type(self, session: Any) -> str | None:
        plan = session.plan
        if plan is not None and plan.kind == "item" and plan.raw_header:
            return _type_of(ans104.parse_header(plan.raw_header).tags) or ""
        info = self.store.info(session.id)  # a tx's verified header is stored first; or the object, held now
        return (_type_of(info.tags) or "") if info is not None else None

    def follow(self, session: Any) -> Iterator[tuple[int, int]]:
        """Yield (bytes proven and held, total) while the session runs; raise InferenceError if it fails."""
        while not session.done.wait(POLL_S):
            writer, plan = session.writer, session.plan
            if writer is not None and plan is not None:
                yield writer.held_bytes, plan.data_size
        try:
            info = session.wait(0)
        except BaseException as exc:
            raise failure(session.id, exc) from None
        yield info.data_size, info.data_size

    def check(self, model_id: str) -> None:
        """Run `model add`'s checks on a stored model: chunks and signature, GGUF header, Model-SHA256."""
        info = self.store.info(model_id)
        if info is None or not info.data_complete:
            raise ModelNotFound(f"model '{model_id}' not found on this node or its peers")
        if tag_dict(info).get("Type") != MODEL_TYPE:
            raise NotAModel(f"{model_id} is not tagged Type=model: not a model")
        # Not yet trusted, so not through locate(): the same checks, then the approval.
        path = Path(self.store.object_path(model_id, verify=False))
        self.inference.models.check(model_id, path).result()  # every chunk and the signature
        read_gguf_metadata(path)  # NotAModel when the bytes are no GGUF
        declared = tag_dict(info).get("Model-SHA256")
        if declared is not None and declared.lower() != file_sha256(path):
            raise ModelCorrupt(f"model {model_id}: its bytes do not have the SHA-256 its owner signed (Model-SHA256)")

    def adopt(self, model_id: str, name: str | None = None) -> None:
        """Approve a checked model for this node; with a name, record it (a name record signed by the node wallet)."""
        self.inference.trust.approve(model_id, "pulled")
        if name is not None:
            self.inference.models.name(model_id, name)
