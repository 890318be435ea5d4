"""Who may call what: development routes (arlocal's /mint and /mine) answer loopback clients only.

A public node must not let strangers print test tokens or mine blocks at will, so these
routes are served only to clients on this machine (127.0.0.0/8, ::1), and not at all with
`serve --no-dev-routes`. The client address is the socket's peer: `serve` trusts no proxy
headers, so it cannot be forged with X-Forwarded-For.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

from gateway.errors import ApiError


def is_loopback(request: Request) -> bool:
    """Given a request, return whether it came from this machine."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def require_dev_route(request: Request, route: str) -> None:
    """Given a request to a development route, raise 403 unless dev routes are on and the client is local."""
    if not request.app.state.node.config.dev_routes:
        raise ApiError(403, f"{route} is a development route, disabled on this node (serve --no-dev-routes)")
    if not is_loopback(request):
        raise ApiError(403, f"{route} is a development route, served to clients on this machine (loopback) only")
