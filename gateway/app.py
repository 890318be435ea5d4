"""The gateway's ASGI app: `create_app(config)`."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.config import GatewayConfig
from gateway.errors import install_error_handlers
from gateway.fastpath import EXPOSED_HEADERS, FastPath, SmallObjectCache
from gateway.inference_api.errors import install_inference_errors
from gateway.manifests import ParsedManifests
from gateway.node import Node
from gateway.openapi import add_head_routes, install_openapi
from gateway.routes import ao as ao_routes
from gateway.routes import herder as herder_routes
from gateway.routes import inference as inference_routes
from gateway.routes import ollama as ollama_routes
from gateway.uploads import UploadLimits, UploadSpools
from permastore.store import CorruptChunk, StoreError

log = logging.getLogger("gateway")


def store_copy_verifies(node: Node, object_id: str) -> bool:
    """Given a cached object's ID, read its store copy through (every chunk checked); return whether it verifies.

    A bad chunk also drops every cached object with that content (they share the chunk).
    """
    try:
        for _ in node.store.read(object_id):
            pass
    except CorruptChunk as exc:
        log.error("cached object %s: its stored copy failed verification: %s", object_id, exc)
        if node.small_cache is not None:
            node.small_cache.drop_content(exc.hash)
        return False
    except StoreError:
        return False
    return True


class GatewayApp(FastAPI):
    """The FastAPI app, with cached small objects answered before any middleware or routing runs."""

    fast_path: FastPath | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.fast_path is not None and await self.fast_path.try_serve(scope, send):
            return
        await super().__call__(scope, receive, send)


def create_app(config: GatewayConfig) -> FastAPI:
    """Given a config, return the FastAPI app serving the Arweave / ar.io API."""
    from gateway.routes import blocks, chunk, data, graphql, info, peers, tx, wallet

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        node = Node(config)
        node.small_cache = small_cache
        app.state.node = node
        small_cache.start_reverifying(lambda object_id: store_copy_verifies(node, object_id))
        node.miner.start()
        # The app's long-lived objects (routes, schema, modules) leave the GC's view, so
        # full collections under load stay short and p99 latency stays low.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            small_cache.stop_reverifying()
            await node.miner.stop()
            node.close()  # the inference service (nested lifespan) has closed before the store

    app = GatewayApp(
        title="permastore gateway",
        description="Arweave / ar.io HTTP API over a verifying permanent store.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_inference_errors(app)
    # Browser apps fetch from gateways cross-origin, as they do from arweave.net and arlocal.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=list(EXPOSED_HEADERS),
    )
    small_cache = SmallObjectCache(config.small_cache_bytes, config.small_cache_max_age_s)
    app.state.uploads = UploadSpools(UploadLimits(config.max_uploads, config.max_spool_bytes))
    app.state.manifests = ParsedManifests()
    app.fast_path = FastPath(small_cache)
    app.include_router(add_head_routes(data.raw_router))  # first: peers' ranged reads skip every other match
    for module in (info, wallet, blocks, tx, chunk, graphql, peers):
        app.include_router(add_head_routes(module.router))
    app.include_router(inference_routes.router)  # its lifespan starts and stops the inference service
    app.include_router(ollama_routes.router)  # /api/*: before the data routes' `/{id}/{path}`
    app.include_router(ao_routes.router)  # AO's MU and CU; its lifespan runs inside the inference one
    app.include_router(herder_routes.router)  # remote workers lease calls from the inference service
    app.include_router(add_head_routes(data.router))  # last: `/{id}` would otherwise shadow one-segment routes
    install_openapi(app)
    return app
