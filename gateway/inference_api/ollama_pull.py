"""/api/pull: get a model onto this node from its peers, reporting progress as Ollama's status stream.

    pulling manifest -> pulling <12 hex> (completed/total bytes, as chunks are proven)
    -> verifying sha256 digest -> writing manifest -> success

The work is `inference.model_pull.ModelPuller` over the node's fetch engine (the peers of
`serve --peer` and `--upstream`). What can be refused is refused before the stream begins,
so the client sees the status: the ID or name is resolved (a name this node does not know
is asked of the peers' /api/tags: 404 when none lists it, 409 when they disagree), the
fetch is planned (404 no peer has it, 400 its verified header is not `Type: model`). A
model already held answers the same sequence at once (one `pulling` line with completed ==
total, as Ollama reports a layer on disk). "verifying sha256 digest" is `model add`'s
checks; "writing manifest" approves the model and, for a pull by name, records the name.

Security: a pull stores bytes and makes the node trust a model whoever signed it (the
operator asked for it), so only a caller on this machine may pull what the node does not
already hold and trust, or have the peers asked for a name; anyone may "pull" a model held
and trusted (nothing changes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.errors import ApiError
from gateway.inference_api.ollama_wire import pull_status, pulling
from inference.errors import ModelNotFound
from inference.herder.service import CallService
from inference.model_pull import ModelPuller
from inference.models import MODEL_TYPE, tag_dict
from inference.peer_names import resolve_on_peers
from permastore.protocol import b64url

LOCAL_ONLY = "pulling a model this node does not hold and trust is only allowed from this machine"


@dataclass(frozen=True)
class PullPlan:
    """A pull checked before any status is sent: the model, its fetch (None: held), the name to record."""

    model_id: str
    session: Any = None
    name: str | None = None


def _no_peers(ref: str) -> ApiError:
    return ApiError(404, f"model '{ref}' not found on this node (no peer configured: serve --peer URL)")


def _resolve(service: CallService, puller: ModelPuller, ref: str, local_caller: bool) -> tuple[str, str | None]:
    """Given a reference, return (model ID, the name to record here: None unless the peers named it)."""
    try:
        return service.inference.models.model_id(ref), None
    except ModelNotFound:
        pass
    if not puller.enabled:
        raise _no_peers(ref)
    if not local_caller:
        raise ApiError(403, LOCAL_ONLY)
    found = resolve_on_peers(puller.urls(), ref)
    if found is None:
        raise ApiError(404, f"model '{ref}' not found on this node or its peers")
    return found.model_id, found.name


def plan_pull(service: CallService, puller: ModelPuller, ref: str, local_caller: bool) -> PullPlan:
    """Given a reference, decide the pull before streaming, so refusals keep their status (404, 403, 400)."""
    model_id, name = _resolve(service, puller, ref, local_caller)
    info = service.inference.store.info(model_id)
    held = info if info is not None and info.data_complete else None
    if held is not None and tag_dict(held).get("Type") != MODEL_TYPE:
        raise ApiError(400, f"{model_id} is not tagged Type=model")
    if held is not None and service.inference.trust.allows(held):
        return PullPlan(model_id, None, name)
    if not local_caller:
        raise ApiError(403, LOCAL_ONLY)  # Security: pulling stores bytes and makes the node trust a model
    if held is not None:
        return PullPlan(model_id, None, name)
    if not puller.enabled:
        raise _no_peers(ref)
    return PullPlan(model_id, puller.start(model_id), name)


def pull_steps(service: CallService, puller: ModelPuller, plan: PullPlan) -> Iterator[dict[str, Any]]:
    """Yield the pull's statuses, doing each step (blocking); raise InferenceError on a failure."""
    digest = b64url.decode(plan.model_id).hex()
    yield pull_status("pulling manifest")
    last: dict[str, Any] | None = None
    if plan.session is not None:
        for done, total in puller.follow(plan.session):
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
    puller.check(plan.model_id)
    yield pull_status("writing manifest")
    puller.adopt(plan.model_id, plan.name)
    yield pull_status("success")
