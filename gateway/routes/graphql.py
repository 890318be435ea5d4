"""`POST /graphql` and `GET /graphql?query=...`: the ar.io GraphQL API.

Requests are parsed here rather than by strawberry's HTTP view so that every
malformed request is a JSON `{"error": ...}` like the rest of the gateway.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.bodies import parse_json, read_limited
from gateway.errors import bad_request
from gateway.gql_budget import QueryBudget
from gateway.gql_schema import schema
from gateway.node import node_of

router = APIRouter(tags=["graphql"])


def _request_parts(doc: object) -> tuple[str, dict | None, str | None]:
    """Given a GraphQL request document, return (query, variables, operationName) or raise 400."""
    if not isinstance(doc, dict):
        raise bad_request("GraphQL request must be a JSON object")
    query, variables, operation = doc.get("query"), doc.get("variables"), doc.get("operationName")
    if isinstance(variables, str) and variables:
        variables = parse_json(variables.encode(), "variables is not valid JSON")
    if not isinstance(query, str) or not query.strip():
        raise bad_request("missing GraphQL query")
    if variables is not None and not isinstance(variables, dict) and variables != "":
        raise bad_request("variables must be an object")
    if operation is not None and not isinstance(operation, str):
        raise bad_request("operationName must be a string")
    return query, variables or None, operation


async def _execute(request: Request, doc: object) -> JSONResponse:
    query, variables, operation = _request_parts(doc)
    context = {"node": node_of(request), "budget": QueryBudget()}
    try:
        result = await schema.execute(query, variable_values=variables, operation_name=operation, context_value=context)
    except RecursionError:
        raise bad_request("GraphQL query or variables nested too deeply") from None
    body: dict = {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    # As GraphQL over HTTP: a query that failed to parse or validate has no data at all.
    status = 400 if result.errors and result.data is None else 200
    if status == 400:
        body["error"] = result.errors[0].message
        body["status"] = 400
    return JSONResponse(body, status_code=status)


@router.post("/graphql", summary="GraphQL (ar.io schema): transactions, transaction")
async def graphql_post(request: Request) -> JSONResponse:
    body = await read_limited(request, node_of(request).config.max_graphql_body)
    return await _execute(request, parse_json(body, "request body is not JSON"))


@router.get("/graphql", summary="GraphQL with the query in the query string")
async def graphql_get(request: Request, query: str = "", variables: str = "", operationName: str | None = None) -> JSONResponse:
    return await _execute(request, {"query": query, "variables": variables, "operationName": operationName})
