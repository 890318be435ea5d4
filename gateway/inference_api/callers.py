"""Who is calling: an API key, a request signed as an ANS-104 item, or a local caller.

Callers are identified by `Authorization: Bearer <API key>` (bound to an address), or by
sending the request JSON as the data of an ANS-104 item signed with their own key
(`Content-Type: application/octet-stream`; the caller is the item's owner address; the
item's target must be this node's address, so it cannot be replayed against another
node). Without either, only a caller on this machine is served, and only while keys are
not required.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from gateway.bodies import read_limited
from gateway.errors import ApiError
from inference.herder.service import CallService, RunningCall
from inference.keys import KEY_PREFIX
from inference.processes import CallPlan
from inference.records import SignedRequest
from permastore.protocol import ans104, b64url
from permastore.protocol.ans104 import DataItemHeader
from permastore.protocol.errors import ProtocolError

MAX_REQUEST_BODY = 4 * 1024 * 1024  # prompts and chat histories, never weights
OCTET_STREAM = "application/octet-stream"
BEARER = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class CallerRequest:
    """Who is calling and the JSON body they sent (not validated yet)."""

    address: str
    body: dict[str, Any]
    signed: SignedRequest | None = None

    @property
    def signed_item(self) -> str | None:
        return self.signed.id if self.signed else None


def is_loopback(request: Request) -> bool:
    """Given a request, return True when its socket peer is this machine."""
    # Security: the socket peer, never a forwarded-for header, decides "local".
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Given request bytes, return the JSON object they hold, else a 400 saying why."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is not valid JSON: nested too deep") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _bearer_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def _address_from_key(request: Request, service: CallService) -> str | None:
    """Return the address of the presented API key, None when no key counts; raise 401."""
    key = _bearer_key(request)
    if key is None:
        return None
    address = service.keys.address_for(key)
    if address is not None:
        return address
    # A local caller with keys optional may send any placeholder (the openai client insists
    # on one); a key in our own format that does not resolve is always refused.
    if key.startswith(KEY_PREFIX) or service.settings.require_keys or not is_loopback(request):
        raise ApiError(401, "unknown or revoked API key", BEARER)
    return None


async def read_body(request: Request) -> bytes:
    """Given a request, return its body (at most MAX_REQUEST_BODY bytes, else 413)."""
    return await read_limited(request, MAX_REQUEST_BODY)


async def identify(request: Request, service: CallService) -> CallerRequest:
    """Given a call request, return the caller's address and body; raise 401/400/403/413.

    Nothing is stored or used up here: a signed request is only verified (see `use`).
    """
    raw = await read_body(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == OCTET_STREAM:
        return await run_in_threadpool(_verify_signed, service, raw)
    body = parse_json_object(raw)
    address = _address_from_key(request, service)
    if address is not None:
        return CallerRequest(address, body)
    if not service.settings.require_keys and is_loopback(request):
        return CallerRequest(service.node_address, body)
    raise ApiError(401, "an API key is required: send Authorization: Bearer <key> (make one with "
                        "`permastore keys create`) or a request signed as an ANS-104 item", BEARER)


def _verify_signed(service: CallService, raw: bytes) -> CallerRequest:
    """Given the bytes of a signed ANS-104 item, verify it; return its owner and JSON data."""
    try:
        header, data = ans104.parse_item(raw)
        ans104.verify_item(raw)  # Security: the signature binds the owner to this exact body
    except ProtocolError as exc:
        raise ApiError(400, f"not a valid signed ANS-104 item: {exc}") from None
    _check_bound_to(service.node_address, header)
    return CallerRequest(header.owner_address, parse_json_object(data), SignedRequest(header.id, raw))


def _check_bound_to(node: str, header: DataItemHeader) -> None:
    """Refuse a signed request whose ANS-104 target is not this node's wallet address.

    Security: without it, a request signed for one node could be replayed against another
    node (each remembers only its own used items) and charged to the signer there too.
    """
    if header.target is None:
        raise ApiError(400, f"a signed request must name this node: set the item's target to {node}")
    target = b64url.encode(header.target)
    if target != node:
        raise ApiError(403, f"this signed request is for node {target}, not this node ({node})")


def use(service: CallService, caller: CallerRequest) -> None:
    """Given a validated request, use up its signed item (once) and keep the item; 409 when already used.

    The item is stored as the caller's permanent authorisation. A copy already stored (a
    stranger may post it to /tx first) is the same request and does not use it up.
    """
    signed = caller.signed
    if signed is None:
        return
    if not service.keys.use_request(signed.id):
        raise ApiError(409, f"signed request {signed.id} was already used")
    try:
        if service.inference.store.info(signed.id) is None:
            service.inference.store.put_item(signed.item)
    except BaseException:
        service.keys.release_request(signed.id)
        raise


def release(service: CallService, caller: CallerRequest) -> None:
    """Given a request whose call was refused before anything was charged or recorded, free its signed item."""
    if caller.signed is not None:
        service.keys.release_request(caller.signed.id)


def start_call(service: CallService, caller: CallerRequest, plan: CallPlan, payment: int | None) -> RunningCall:
    """Use up the caller's signed request (if any), then reserve, record and queue the call; return it.

    A refused call (no credit, bad payment) releases the signed request: nothing was charged or recorded.
    """
    use(service, caller)
    try:
        return service.start(plan, caller.address, payment)
    except BaseException:
        release(service, caller)
        raise
