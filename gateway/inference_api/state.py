"""The inference service of one gateway: built once when the server starts, closed when it stops.

This is the composition point: the node's store and read-through source, the herder
settings `serve` loaded, the inference context and the call service (whose workers start,
and warm, with the server, not on the first call).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from gateway.errors import ApiError
from gateway.node import Node
from inference.context import Inference
from inference.herder.service import CallService
from inference.settings import HerderSettings, SettingsError

log = logging.getLogger("gateway.inference")

# Blocking inference steps (planning, signing, records) run on these threads, not on the
# server's shared pool: however many calls arrive, plain data routes keep their threads.
# None of them waits for a model: a running call is awaited, holding no thread.
STEP_THREADS = 8
# A node with models announces itself once its workers have started and loaded the newest
# (so a first call finds them ready); a start slower than this is not waited for. A node
# without models starts its workers with the first call.
WORKERS_READY_WAIT_S = 30.0
T = TypeVar("T")


def open_service(node: Node) -> CallService:
    """Given the running node, build its inference context and call service (workers start now)."""
    settings = node.config.herder or HerderSettings.load(node.config.data_dir)
    inference = Inference.open(node.store, source=node.upstream, trusted_owners=settings.trust_model_owners,
                               operator=False)
    try:
        service = CallService.open(inference, node.config.data_dir, settings)
    except BaseException:
        inference.close()
        raise
    if service.preloaded and not service.pool.wait_ready(WORKERS_READY_WAIT_S):
        log.warning("inference workers not ready after %.0f s; serving meanwhile", WORKERS_READY_WAIT_S)
    return service


def close_service(service: CallService) -> None:
    """Stop the workers, then close the context (pending record writes finish first)."""
    try:
        service.close()
    finally:
        service.inference.close()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Nested in the app's lifespan: the node is open before this starts and closed after it ends."""
    app.state.inference = None
    app.state.inference_problem = None
    app.state.inference_steps = ThreadPoolExecutor(max_workers=STEP_THREADS, thread_name_prefix="inference-step")
    try:
        app.state.inference = await run_in_threadpool(open_service, app.state.node)
    except SettingsError as exc:  # the data routes still serve; inference answers 503 with the reason
        log.error("inference is misconfigured: %s", exc)
        app.state.inference_problem = f"inference is misconfigured: {exc}"
    try:
        yield
    finally:
        service, app.state.inference = app.state.inference, None
        if service is not None:
            await run_in_threadpool(close_service, service)
        app.state.inference_steps.shutdown(wait=False)


def service_of(request: Request) -> CallService:
    """Given a request, return the app's call service; 503 while there is none."""
    service = getattr(request.app.state, "inference", None)
    if service is None:
        problem = getattr(request.app.state, "inference_problem", None)
        raise ApiError(503, problem or "inference is not running on this node")
    service.pool.start()  # an empty node starts its workers when inference is first asked for
    return service


async def blocking(request: Request, function: Callable[..., T], *args: object) -> T:
    """Run a blocking inference step on the inference threads; return its result (or raise its error)."""
    steps: ThreadPoolExecutor = request.app.state.inference_steps
    return await asyncio.wrap_future(steps.submit(function, *args))
