"""`POST /graphql` and `GET /graphql?query=...`: the ar.io GraphQL API.

Requests are parsed here rather than by strawberry's HTTP view so that every
malformed request is a JSON `{"error": ...}` like the rest of the gateway.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from gateway.bodies import parse_json, read_limited
from gateway.errors import bad_request
from gateway.gql_budget import QueryBudget
from gateway.gql_schema import schema
from gateway.node import node_of
from gateway.openapi import answers, json_body, request_body

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
    return query, variables if isinstance(variables, dict) and variables else None, operation


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
    status = 200
    if result.errors and result.data is None:
        status = 400
        body["error"] = result.errors[0].message
        body["status"] = 400
    return JSONResponse(body, status_code=status)


GRAPHQL_REQUEST = {"type": "object", "required": ["query"], "properties": {
    "query": {"type": "string", "minLength": 1}, "variables": {"type": ["object", "null"]},
    "operationName": {"type": ["string", "null"]}}}
GRAPHQL_ANSWER = {"type": "object", "required": ["data"], "properties": {"data": {}, "errors": {"type": "array"}}}
GRAPHQL_REFUSAL = {"description": "The query did not parse, validate or fit the cost limits (data null, errors, error)",
                   "content": {"application/json": {"schema": {
                       "type": "object", "required": ["error", "status"],
                       "properties": {"error": {"type": "string"}, "status": {"type": "integer"}, "data": {"type": "null"},
                                      "errors": {"type": "array"}}}}}}
ANSWERS = answers(413, s200=json_body(GRAPHQL_ANSWER, "The answer; resolver errors (a bad cursor) come in `errors` by `data`"))
ANSWERS[400] = GRAPHQL_REFUSAL


@router.post("/graphql", summary="GraphQL (ar.io schema): transactions, transaction, blocks, block",
             responses=ANSWERS, openapi_extra=request_body({"application/json": GRAPHQL_REQUEST}))
async def graphql_post(request: Request) -> JSONResponse:
    body = await read_limited(request, node_of(request).config.max_graphql_body)
    return await _execute(request, parse_json(body, "request body is not JSON"))


@router.get("/graphql", summary="GraphQL with the query in the query string", responses=ANSWERS)
async def graphql_get(
    request: Request,
    query: str = Query(min_length=1, description="the GraphQL document"),
    variables: str = Query("", description="the variables, as JSON text"),
    operationName: str | None = None,
) -> JSONResponse:
    return await _execute(request, {"query": query, "variables": variables, "operationName": operationName})
