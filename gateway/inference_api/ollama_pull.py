"""/api/pull: get a model onto this node from its peers, reporting progress as Ollama's status stream.

    pulling manifest -> pulling <12 hex> (completed/total bytes, as chunks are proven)
    -> verifying sha256 digest -> writing manifest -> success

The model comes from the node's fetch engine (`permastore.sources.engine.Fetcher`, the
peers of `serve --peer` and `--upstream`): many peers at once, every chunk proven against
the signed data root (or the item checked whole), resumable. What can be refused is
refused before the stream begins, so the client sees the status (404, 403, 400): the ID
or name is resolved (a name this node does not know is asked of the peers' /api/tags,
`ollama_peer_names`), the fetch is planned (a peer holds it, its verified header says
`Type: model`) before any status is sent. A model already held answers the same sequence
at once (one `pulling` line with completed == total, as Ollama reports a layer on disk).

"verifying sha256 digest" runs `model add`'s checks on the stored file: every chunk and
the signature against the ID, a readable GGUF header, and the `Model-SHA256` tag (when the
owner wrote one) against the file's SHA-256. "writing manifest" approves the model for
this node and, for a pull by name, records the name (a name record signed by the node
wallet), so the model is then usable by that name and by its ID.

Security: a pull stores bytes and makes the node trust a model whoever signed it (a
stranger's model included: the operator asked for it, as `permastore run ID` does), so
only a caller on this machine may pull what the node does not already hold and trust, or
have the peers asked for a name; anyone may "pull" a model held and trusted (nothing changes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ApiError
from gateway.inference_api.ollama_peer_names import resolve_on_peers
from gateway.inference_api.ollama_wire import pull_status, pulling
from inference.errors import InferenceError, ModelCorrupt, ModelNotFound, NotAModel, UpstreamFailed
from inference.herder.service import CallService
from inference.models import MODEL_TYPE, file_sha256, read_gguf_metadata, tag_dict
from permastore.protocol import ans104, b64url
from permastore.protocol.errors import ProtocolError
from permastore.store.errors import NotFound, StoreError

POLL_S = 0.25  # how often a running fetch reports progress
PLAN_TIMEOUT_S = 120.0  # headers, leaf lists, offsets: each asked with its own deadline


def _type_of(tags: list) -> str | None:
    for tag in tags:
        if tag.name == b"Type":
            return tag.value.decode("utf-8", "replace")
    return None


class PeerModelSource:
    """Models from the node's peers, through its fetch engine (None: the node has no peers)."""

    def __init__(self, fetcher: Any, store: Any):
        self.fetcher = fetcher
        self.store = store

    @property
    def enabled(self) -> bool:
        return self.fetcher is not None

    def urls(self) -> list[str]:
        return self.fetcher.peers.urls() if self.fetcher is not None else []

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
            raise self._failure(model_id, session.error)
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
            raise self._failure(session.id, exc) from None
        yield info.data_size, info.data_size

    @staticmethod
    def _failure(model_id: str, exc: BaseException) -> InferenceError:
        if isinstance(exc, InferenceError):
            return exc
        if isinstance(exc, NotFound):
            return ModelNotFound(f"model '{model_id}' not found on this node or its peers")
        if isinstance(exc, (StoreError, ProtocolError, ValueError)):
            return UpstreamFailed(f"model {model_id} could not be fetched and verified: {exc} (pull again to resume)")
        return UpstreamFailed(f"model {model_id} could not be fetched: {type(exc).__name__}")


@dataclass(frozen=True)
class PullPlan:
    """A pull checked before any status is sent: the model, its fetch (None: held), the name to record."""

    model_id: str
    session: Any = None
    name: str | None = None


def _resolve(service: CallService, source: PeerModelSource, ref: str, local_caller: bool) -> tuple[str, str | None]:
    """Given a reference, return (model ID, the name to record here: None unless the peers named it)."""
    try:
        return service.inference.models.model_id(ref), None
    except ModelNotFound:
        pass
    if not source.enabled:
        raise ApiError(404, f"model '{ref}' not found on this node (no peer configured: serve --peer URL)")
    if not local_caller:
        raise ApiError(403, "pulling a model this node does not hold and trust is only allowed from this machine")
    found = resolve_on_peers(source.urls(), ref)
    if found is None:
        raise ApiError(404, f"model '{ref}' not found on this node or its peers")
    return found.model_id, found.name


def plan_pull(service: CallService, source: PeerModelSource, ref: str, local_caller: bool) -> PullPlan:
    """Given a reference, decide the pull before streaming, so refusals keep their status (404, 403, 400)."""
    model_id, name = _resolve(service, source, ref, local_caller)
    info = service.inference.store.info(model_id)
    held = info is not None and info.data_complete
    if held and tag_dict(info).get("Type") != MODEL_TYPE:
        raise ApiError(400, f"{model_id} is not tagged Type=model")
    if held and service.inference.trust.allows(info):
        return PullPlan(model_id, None, name)
    if not local_caller:
        # Security: pulling stores bytes and makes the node trust a model.
        raise ApiError(403, "pulling a model this node does not hold and trust is only allowed from this machine")
    if held:
        return PullPlan(model_id, None, name)
    if not source.enabled:
        raise ApiError(404, f"model '{ref}' not found on this node (no peer configured: serve --peer URL)")
    return PullPlan(model_id, source.start(model_id), name)


def check_pulled(service: CallService, model_id: str) -> None:
    """Run `model add`'s checks on a stored model: chunks and signature, GGUF header, Model-SHA256."""
    inference = service.inference
    info = inference.store.info(model_id)
    if info is None or not info.data_complete:
        raise ModelNotFound(f"model '{model_id}' not found on this node or its peers")
    if tag_dict(info).get("Type") != MODEL_TYPE:
        raise NotAModel(f"{model_id} is not tagged Type=model: not a model")
    # Not yet trusted, so not through locate(): the same checks, then the approval.
    path = Path(inference.store.object_path(model_id, verify=False))
    inference.models.check(model_id, path).result()  # every chunk and the signature
    read_gguf_metadata(path)  # NotAModel when the bytes are no GGUF
    declared = tag_dict(info).get("Model-SHA256")
    if declared is not None and declared.lower() != file_sha256(path):
        raise ModelCorrupt(f"model {model_id}: its bytes do not have the SHA-256 its owner signed (Model-SHA256)")


def pull_steps(service: CallService, source: PeerModelSource, plan: PullPlan) -> Iterator[dict[str, Any]]:
    """Yield the pull's statuses, doing each step (blocking); raise InferenceError on a failure."""
    digest = b64url.decode(plan.model_id).hex()
    yield pull_status("pulling manifest")
    last: dict[str, Any] | None = None
    if plan.session is not None:
        for done, total in source.follow(plan.session):
            line = pull_status(pulling(digest), digest, total, done)
            if line != last:
                yield line
                last = line
    info = service.inference.store.info(plan.model_id)
    if info is None or not info.data_complete:
        raise ModelNotFound(f"model '{plan.model_id}' not found on this node or its peers")
    if last is None or last.get("completed") != info.data_size:
        yield pull_status(pulling(digest), digest, info.data_size, info.data_size)
    yield pull_status("verifying sha256 digest")
    check_pulled(service, plan.model_id)
    yield pull_status("writing manifest")
    models = service.inference.models
    service.inference.trust.approve(plan.model_id, "pulled")
    if plan.name is not None:
        models.name(plan.model_id, plan.name)  # signed by the node wallet: the name now resolves here
    yield pull_status("success")
