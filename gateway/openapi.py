"""What `/openapi.json` says: every route's real status codes, methods, parameters and bodies.

Routes declare their answers with `answers(...)` (the JSON error body for 4xx/5xx, the
body or headers of the others) and their path parameters with the patterns below, so a
client (or schemathesis) reading the document learns what the node really does. FastAPI's
automatic 422 is removed: validation failures here are 400s, documented where they occur.
"""

from __future__ import annotations

from typing import Any, TypedDict

from fastapi import FastAPI, Path
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel
from starlette.routing import Match

ID_PATTERN = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$"  # 32 bytes: the last character carries 2 zero bits
UINT_PATTERN = r"^[0-9]{1,40}$"
BLOCK_HASH_PATTERN = r"^[A-Za-z0-9_-]{64}$"
PATTERN_MEANINGS = {  # what a path parameter that failed its pattern should have been, in words
    ID_PATTERN: "a 43-character base64url ID (32 bytes)",
    UINT_PATTERN: "a non-negative decimal integer",
    BLOCK_HASH_PATTERN: "64 base64url characters (a 48-byte block hash)",
}


class ErrorBody(BaseModel):
    """Every refusal: the reason a client can act on, and the HTTP status again."""

    error: str
    status: int


REASONS = {
    202: "Pending: accepted, not yet in a block (text `Pending`)",
    206: "Partial content (Range)",
    208: "Already stored (text)",
    301: "Redirect (a manifest without its trailing slash)",
    304: "Not modified (If-None-Match)",
    400: "Malformed request (the reason says what)",
    403: "Refused to this client or on this node",
    404: "Not found here (nor through upstreams)",
    408: "The request was too slow to arrive",
    413: "Request body too large",
    416: "Range not satisfiable or malformed",
    500: "Stored data failed verification (never served)",
    502: "Upstreams failed or sent data that does not verify",
    503: "Busy: too many uploads or connections; retry later",
    507: "Insufficient storage: the disk is full, nothing was stored",
}
ERROR_STATUSES = {400, 403, 404, 408, 413, 416, 500, 502, 503, 507}


# FastAPI's `responses`: {status: OpenAPI response object (or a model)}.
Responses = dict[int | str, dict[str, Any]]


class RouteDocs(TypedDict, total=False):
    """The documentation keywords of a route decorator, kept apart when routes share them."""

    summary: str
    responses: Responses
    openapi_extra: dict[str, Any]


def answers(*statuses: int, **bodies: dict) -> Responses:
    """Given status codes (and, by name `s206=...`, the content of non-error ones), return FastAPI `responses`."""
    responses: Responses = {}
    for status in statuses:
        entry: dict = {"description": REASONS.get(status, "")}
        if status in ERROR_STATUSES:
            entry["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        elif status in (202, 208):
            entry["content"] = {"text/plain": {"schema": {"type": "string"}}}
        responses[status] = entry
    for key, content in bodies.items():
        responses.setdefault(int(key.removeprefix("s")), {"description": ""}).update(content)
    return responses


def id_param(description: str = "a 43-character base64url ID"):
    return Path(pattern=ID_PATTERN, description=description)


def documented_id_param(description: str):
    """An ID path parameter documented with its pattern but checked by the route (see gateway.routes.data)."""
    return Path(description=description, json_schema_extra={"pattern": ID_PATTERN})


def uint_param(description: str):
    return Path(pattern=UINT_PATTERN, description=description)


def text(schema: dict | None = None) -> dict:
    """Given a string schema, return a text/plain response content."""
    return {"content": {"text/plain": {"schema": schema or {"type": "string"}}}}


def binary(media_type: str = "application/octet-stream") -> dict:
    return {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


def json_body(schema: dict, description: str = "") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def request_body(content: dict, description: str = "", required: bool = True) -> dict:
    """Given {media type: schema}, return openapi_extra declaring a raw request body the route reads itself."""
    return {"requestBody": {"required": required, "description": description,
                            "content": {media: {"schema": schema} for media, schema in content.items()}}}


def allowed_methods(app: FastAPI, scope) -> list[str]:
    """Given a request whose method no route takes, return every method its path's route template takes.

    Starlette names only the first route that matched the path; the path's template
    (e.g. `/graphql`, which has a GET and a POST route) may take more.
    """
    return route_template(app, scope)[1]


def _flat_routes(routes):
    """Given app routes, yield them with included routers opened up, in matching order."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat_routes(included.routes)
        else:
            yield route


def route_template(app: FastAPI, scope) -> tuple[str | None, list[str]]:
    """Given a request, return the template of the first route whose path matches it, and that template's methods."""
    template = None
    methods: set[str] = set()
    for route in _flat_routes(app.routes):
        if not isinstance(route, APIRoute):
            continue
        if template is None:
            match, _ = route.matches(scope)
            if match is Match.NONE:
                continue
            template = route.path_format
        if route.path_format == template:
            methods |= route.methods or set()
    return template, sorted(methods)


def _chunk_supplement() -> dict:
    """What the chunk routes (gateway/routes/chunk.py, whose decorators do not say it yet) answer."""
    offset = [{"name": "offset", "in": "path", "required": True, "description": "a weave offset",
               "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}]
    chunk = {"type": "object", "required": ["chunk", "data_path", "tx_path", "packing"]}
    fields = ["data_root", "data_size", "data_path", "offset", "chunk"]
    post_body = request_body({"application/json": {"type": "object", "required": fields}},
                             "One chunk of a posted tx with its data_path, as arweave-js's uploader sends it")
    posted = answers(400, 408, 413, 507, s200=text({"type": "string", "enum": ["OK"]}))
    get, get_data = answers(400, 404, s200=json_body(chunk)), answers(400, 404, s200=binary())
    return {
        "/chunk": {"post": {**post_body, "responses": _responses(posted)}},
        "/chunk/{offset}": {"get": {"parameters": offset, "responses": _responses(get)},
                            "head": {"parameters": offset, "responses": _responses(_headers_only(get))}},
        "/chunk/{offset}/data": {"get": {"parameters": offset, "responses": _responses(get_data)},
                                 "head": {"parameters": offset, "responses": _responses(_headers_only(get_data))}},
    }


def _responses(responses: dict) -> dict:
    """Given FastAPI `responses` (models allowed), return them as OpenAPI response objects."""
    out = {}
    for status, entry in responses.items():
        entry = dict(entry)
        entry.setdefault("description", REASONS.get(status, ""))
        out[str(status)] = entry
    return out


def _supplement(schema: dict, extra: dict) -> None:
    """Given the document and {path: {method: operation parts}}, set those parts on the operations."""
    for path, methods in extra.items():
        for method, parts in methods.items():
            operation = schema["paths"].get(path, {}).get(method)
            if operation is None:
                continue
            for key, value in parts.items():
                if key == "responses":
                    operation["responses"] = {**{k: v for k, v in operation.get("responses", {}).items() if k != "200"}, **value}
                else:
                    operation[key] = value


def install_openapi(app: FastAPI) -> None:
    """Given the app, make /openapi.json the document described above (built once)."""

    def document() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _supplement(schema, _chunk_supplement())
            schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = ErrorBody.model_json_schema()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]  # FastAPI's documented way to replace the schema


DEVELOPMENT: dict[str, Any] = {"x-development": True}  # openapi_extra of routes that change state on GET: no HEAD twin


def _headers_only(responses: dict) -> dict:
    """Given GET's responses, return HEAD's: the same statuses and headers, no content."""
    return {status: {k: v for k, v in entry.items() if k not in ("content", "model")} for status, entry in responses.items()}


class HeadResponse(Response):
    """Documents a HEAD answer as having no body (the endpoint's own response is sent, bodiless)."""

    media_type = None


def add_head_routes(router: APIRouter) -> APIRouter:
    """Given a router, answer HEAD on each of its GET routes (same status and headers, no body); return it.

    Each HEAD twin is its own route, so the document lists it as its own operation. Twins
    follow the router's GET routes in the same order, so within the router the same route
    wins for HEAD as for GET. uvicorn sends no body for HEAD; the data routes do not even
    read one. Idempotent: a router is shared by every app built in one process.
    """
    heads = {route.path for route in router.routes if isinstance(route, APIRoute) and "HEAD" in (route.methods or ())}
    for route in list(router.routes):
        if not isinstance(route, APIRoute) or route.methods != {"GET"} or route.path in heads:
            continue
        if (route.openapi_extra or {}).get("x-development"):
            continue
        router.add_api_route(
            route.path, route.endpoint, methods=["HEAD"], name=f"{route.name}_head",
            summary=f"{route.summary or route.name} (headers only)", description=route.description,
            responses=_headers_only(route.responses), response_class=HeadResponse,
            include_in_schema=route.include_in_schema, openapi_extra=route.openapi_extra,
        )
        heads.add(route.path)
    return router
