"""/api/pull: get a model onto this node, reporting progress as Ollama's status stream.

    pulling manifest -> pulling <12 hex> (completed/total bytes) -> verifying sha256 digest
    -> writing manifest -> success

A model already held answers the same sequence at once (one `pulling` line with
completed == total, as Ollama reports a layer already on disk). A model not held comes
from a `ModelSource`: today the node's upstreams (`serve --upstream`, read through and
verified by `permastore.sources`); the distribution work's peers (`serve --peer`, chunk by
chunk with proofs and progress) plug in here as another ModelSource. "verifying" checks
every chunk and the item's signature against the ID; "writing manifest" approves the
model for this node (as `model add` does).

Security: a pull stores bytes and makes the node trust a model, so only a caller on this
machine may pull what the node does not already hold and trust; anyone may "pull" a
model that is held and trusted (nothing changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import ApiError
from gateway.inference_api.ollama_wire import pull_status, pulling
from inference.errors import InferenceError, ModelNotFound, UpstreamFailed
from inference.fetching import Fetcher
from inference.herder.service import CallService
from inference.models import MODEL_TYPE, tag_dict
from permastore.protocol import b64url

Progress = Callable[[int, int], None]  # (bytes proven so far, total bytes)


class ModelSource(Protocol):
    """Where /api/pull gets a model this node does not hold (stored verified, then reported)."""

    @property
    def enabled(self) -> bool: ...

    def fetch(self, model_id: str, progress: Progress) -> None:
        """Store the object `model_id`, every chunk proven; call progress as bytes arrive.

        Raises ModelNotFound when no source has it, UpstreamFailed when sources failed or
        sent what does not verify (nothing is stored then).
        """


class UpstreamModelSource:
    """A ModelSource over the node's read-through upstreams (the whole object at once, then one progress call)."""

    def __init__(self, fetcher: Fetcher, store: Any):
        self.fetcher = fetcher
        self.store = store

    @property
    def enabled(self) -> bool:
        return self.fetcher.enabled

    def fetch(self, model_id: str, progress: Progress) -> None:
        self.fetcher.fetch(
            model_id,
            missing=lambda why: ModelNotFound(f"model '{model_id}' not found on this node or its upstreams"),
            failed=lambda why: UpstreamFailed(f"model {model_id} could not be fetched and verified: {why}"),
            held=lambda: self._held(model_id),
        )
        info = self.store.info(model_id)
        if info is not None:
            progress(info.data_size, info.data_size)

    def _held(self, model_id: str) -> bool:
        info = self.store.info(model_id)
        return info is not None and info.data_complete


@dataclass(frozen=True)
class PullPlan:
    """A pull checked before any status is sent: the model ID, and whether it must be fetched."""

    model_id: str
    fetch: bool


def plan_pull(service: CallService, source: ModelSource, ref: str, local_caller: bool) -> PullPlan:
    """Given a reference, decide the pull before streaming, so refusals keep their status (404, 403)."""
    try:
        model_id = service.inference.models.model_id(ref)
    except ModelNotFound:
        # A name no record here names: peers' names come with the distribution work.
        raise ApiError(404, f"model '{ref}' not found on this node or its peers") from None
    info = service.inference.store.info(model_id)
    held = info is not None and info.data_complete
    if held and tag_dict(info).get("Type") != MODEL_TYPE:
        raise ApiError(400, f"{model_id} is not tagged Type=model")
    if held and service.inference.trust.allows(info):
        return PullPlan(model_id, fetch=False)
    if not local_caller:
        # Security: pulling stores bytes and makes the node trust a model.
        raise ApiError(403, "pulling a model this node does not hold and trust is only allowed from this machine")
    if not held and not source.enabled:
        raise ApiError(404, f"model '{ref}' not found on this node or its peers (no upstream or peer configured)")
    return PullPlan(model_id, fetch=not held)


def pull_steps(service: CallService, source: ModelSource, plan: PullPlan) -> Iterator[dict[str, Any]]:
    """Yield the pull's statuses, doing each step (blocking); raise InferenceError on a failure."""
    digest = b64url.decode(plan.model_id).hex()
    yield pull_status("pulling manifest")
    lines: list[dict[str, Any]] = []
    if plan.fetch:
        source.fetch(plan.model_id, lambda done, total: lines.append(
            pull_status(pulling(digest), digest, total, done)))
        yield from lines
    info = service.inference.store.info(plan.model_id)
    if info is None or not info.data_complete:
        raise ModelNotFound(f"model '{plan.model_id}' not found on this node or its peers")
    if not lines or lines[-1].get("completed") != info.data_size:
        yield pull_status(pulling(digest), digest, info.data_size, info.data_size)
    if tag_dict(info).get("Type") != MODEL_TYPE:
        raise InferenceError(f"{plan.model_id} is not tagged Type=model: not a model")
    yield pull_status("verifying sha256 digest")
    # Not yet trusted, so not through locate(): the same check, then the approval below.
    path = Path(service.inference.store.object_path(plan.model_id, verify=False))
    service.inference.models.check(plan.model_id, path).result()  # every chunk and the signature
    yield pull_status("writing manifest")
    service.inference.trust.approve(plan.model_id, "pulled")
    yield pull_status("success")

