"""Run the gateway under uvicorn, announce its URL, stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import resource
import signal
import socket
import sys
import threading

import uvicorn

from gateway.access_log import AccessLog, install_access_log
from gateway.app import create_app
from gateway.config import ConnectionLimits, GatewayConfig
from permastore.cli.errors import CliError

FILES_BESIDES_CONNECTIONS = 256  # SQLite, segments, spools, herder pipes


def bind_socket(host: str, port: int) -> socket.socket:
    """Given host and port, return a listening socket (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def raise_open_files_limit(connections: int) -> None:
    """Given the connections to allow, raise the soft open-files limit toward the hard one so they fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILES_BESIDES_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def url_of(sock: socket.socket) -> str:
    """Given a bound socket, return the http URL clients use."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints its URL once the app has started (store open, miner running)."""

    def __init__(self, config: uvicorn.Config, url: str):
        super().__init__(config)
        self.url = url

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"permastore gateway listening on {self.url}", flush=True)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_quietly_on_signals(server: uvicorn.Server):
    """While inside: SIGINT/SIGTERM ask `server` to shut down gracefully, and the process exits 0 after.

    uvicorn installs its own handlers while it serves, and once it has shut down it restores
    the handlers it found and raises each signal it caught again, so the program decides
    what a signal means. The handlers found are these: they only ask for a shutdown (a no-op
    by then), so the signal ends `serve()` normally instead of killing the process. A signal
    that comes before uvicorn has installed its handlers stops the server as it starts.
    Public parts only: the standard `signal` module and `Server.should_exit`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread
        return

    def ask_to_stop(signum, frame) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# gateway.fast_protocol subclasses uvicorn's httptools protocol and reads its private parts; it
# was written and tested against this minor only. Any other uvicorn gets the plain protocol.
FAST_PATH_UVICORN = (0, 54)


def fast_path_refusal(version: str = uvicorn.__version__) -> str | None:
    """Given uvicorn's version, return why the fast protocol must not be used, or None when it may."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "httptools is not installed"
    parts = version.split(".")
    if tuple(int(p) for p in parts[:2] if p.isdigit()) != FAST_PATH_UVICORN:
        return f"uvicorn {version} is not the {FAST_PATH_UVICORN[0]}.{FAST_PATH_UVICORN[1]}.x it was tested with"
    return None


def http_protocol(app, limits: ConnectionLimits, version: str = uvicorn.__version__):
    """Given the app, the connection limits and uvicorn's version, return uvicorn's `http` setting.

    On the tested uvicorn with httptools: our guarded protocol, answering cache hits itself.
    Otherwise h11 with its header-size limit: slower, and without the header and body read
    timeouts, but every answer still comes from the app (a newer uvicorn costs speed, not
    correctness).
    """
    refusal = fast_path_refusal(version)
    if refusal is not None:
        logging.getLogger("gateway").warning("fast path off (%s): serving with uvicorn's h11 protocol", refusal)
        return "h11"
    from gateway.fast_protocol import with_cache

    return with_cache(app.fast_path.cache, limits)


def serve(config: GatewayConfig, quiet: bool = False, lock=None) -> None:
    """Given a config, serve until SIGINT or SIGTERM (uvicorn handles both gracefully).

    Each request is logged to stderr (gateway/access_log.py) unless quiet; `lock` (the data
    folder's ServeLock) is told the URL once the socket is bound.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sock = bind_socket(config.host, config.port)
    raise_open_files_limit(config.connections.max_connections)
    config.public_url = config.public_url or url_of(sock)
    app = create_app(config)
    limits = config.connections
    http = http_protocol(app, limits)
    server = AnnouncingServer(
        uvicorn.Config(
            app,
            loop="auto",  # uvloop when installed
            http=http,
            # The fast protocol caps connections itself (503); the plain one gets uvicorn's cap.
            limit_concurrency=limits.max_connections if isinstance(http, str) else None,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # bound to loopback by default; no proxy to trust
            timeout_keep_alive=int(max(1, limits.keep_alive_s)),
            h11_max_incomplete_event_size=limits.max_header_bytes,  # used only without httptools
            lifespan="on",
        ),
        url_of(sock),
    )
    if lock is not None:
        lock.record(url_of(sock))
    access_log = None if quiet else AccessLog()
    install_access_log(server.config, access_log)
    try:
        with stop_quietly_on_signals(server):
            server.run(sockets=[sock])
    finally:
        sock.close()
        if access_log is not None:
            access_log.close()
    if not server.started:
        raise CliError("the gateway did not start (see the log above)")
    print(f"permastore: stopped ({server.server_state.total_requests} requests served)", file=sys.stderr, flush=True)
