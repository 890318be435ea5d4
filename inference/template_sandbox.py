"""Chat templates rendered in a sandbox process with a time and a size limit.

A model's chat template is Jinja code: `{% for i in range(100000) %}` nested twice runs for
hours inside Jinja's own sandbox. So templates never render on the server's threads: one
spawned process (jinja2 only, an address-space limit) renders them; a render past its time
limit is stopped by an alarm in that process, and a process that does not answer soon
after is killed and replaced. Compiled templates are kept there, keyed by their hash.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import resource
import signal
import threading
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

from inference import jinja_render
from inference.errors import InvalidRequest

log = logging.getLogger("inference.templates")

RENDER_TIMEOUT_S = 2.0  # real templates render in a millisecond or two
KILL_GRACE_S = 1.0  # past the alarm, a sandbox that does not answer is killed
START_TIMEOUT_S = 60.0
MAX_PROMPT_CHARS = 4 << 20  # a prompt longer than any context window anyway
SANDBOX_MEMORY_BYTES = 1 << 30  # address space of the sandbox process
COMPILED_CACHE = 16
JOIN_TIMEOUT_S = 5.0


class _RenderTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _RenderTimeout


def sandbox_main(conn: Connection) -> None:
    """Run in the sandbox process: answer render requests until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles Ctrl-C
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (SANDBOX_MEMORY_BYTES, SANDBOX_MEMORY_BYTES))
    except (ValueError, OSError):
        pass  # a lower hard limit is already in force
    compiled: OrderedDict[str, Any] = OrderedDict()
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        conn.send(_render_request(compiled, request))


def _render_request(compiled: OrderedDict[str, Any], request: dict[str, Any]) -> tuple[str, str]:
    """Given a render request, return ("ok", prompt) or ("error", reason)."""
    signal.setitimer(signal.ITIMER_REAL, request["timeout_s"])
    try:
        template = compiled.get(request["sha256"])
        if template is None:
            template = jinja_render.compile_template(request["source"])
            compiled[request["sha256"]] = template
            while len(compiled) > COMPILED_CACHE:
                compiled.popitem(last=False)
        prompt = jinja_render.render_compiled(template, request["bos_token"], request["eos_token"],
                                              request["messages"], request["max_chars"])
        return ("ok", prompt)
    except _RenderTimeout:
        return ("error", f"rendering took longer than {request['timeout_s']:g} s")
    except MemoryError:
        return ("error", "rendering ran out of memory")
    except Exception as exc:  # noqa: BLE001 - a template may raise anything (raise_exception, bad syntax)
        return ("error", f"{type(exc).__name__}: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class TemplateSandbox:
    """The server's (or a command's) template renderer: one sandbox process, started on first use."""

    def __init__(self, timeout_s: float = RENDER_TIMEOUT_S, max_chars: int = MAX_PROMPT_CHARS):
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one render at a time in the one process
        self._closed = False

    def render(self, name: str, source: str, bos_token: str, eos_token: str, messages: list[dict[str, str]]) -> str:
        """Given a template and validated messages, return the prompt; InvalidRequest when it cannot render."""
        request = {
            "sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(), "source": source,
            "bos_token": bos_token, "eos_token": eos_token, "messages": messages,
            "timeout_s": self.timeout_s, "max_chars": self.max_chars,
        }
        with self._lock:
            kind, value = self._exchange(request)
        if kind != "ok":
            raise InvalidRequest(f"chat template {name!r} cannot render these messages: {value}")
        return value

    def _exchange(self, request: dict[str, Any]) -> tuple[str, str]:
        conn = self._ensure_started()
        try:
            conn.send(request)
            if conn.poll(self.timeout_s + KILL_GRACE_S):
                return conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._stop(kill=True)
            return ("error", "the template sandbox died while rendering")
        log.warning("template sandbox did not answer in time: killed")
        self._stop(kill=True)
        return ("error", f"rendering took longer than {self.timeout_s:g} s")

    def _ensure_started(self) -> Connection:
        if self._closed:
            raise InvalidRequest("the template sandbox is closed")
        if self._conn is not None and self._process.is_alive():
            return self._conn
        self._stop(kill=True)
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=sandbox_main, args=(child,), daemon=True, name="template-sandbox")
        process.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            process.kill()
            parent.close()
            raise InvalidRequest("the template sandbox did not start")
        parent.recv()
        self._process, self._conn = process, parent
        return parent

    def _stop(self, kill: bool) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None or conn is None:
            return
        if kill:
            process.kill()
        else:
            try:
                conn.send(None)
            except (OSError, ValueError):
                process.kill()
        process.join(JOIN_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join(JOIN_TIMEOUT_S)
        conn.close()

    def close(self) -> None:
        """Stop the sandbox process."""
        with self._lock:
            self._closed = True
            self._stop(kill=False)
