"""A real gateway (with the inference routes) served by uvicorn on 127.0.0.1, in this process.

In-process so that tests can reach the herder's worker pids to kill or stop them; the
HTTP path is the real one (socket, uvicorn, FastAPI), and workers are real processes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import GatewayConfig
from inference.settings import HerderSettings

START_TIMEOUT_S = 30


@dataclass
class InferenceServer:
    url: str
    app: object
    server: uvicorn.Server
    thread: threading.Thread
    model_id: str = ""

    @property
    def store(self):
        return self.app.state.node.store

    @property
    def service(self):
        """Return the CallService (started with the server)."""
        return self.app.state.inference

    @property
    def node_address(self) -> str:
        return self.service.node_address

    def add_model(self, path: Path) -> str:
        """Store a GGUF as this node's operator would (`model add`); return its ID."""
        return self.service.inference.models.add(path)

    def client(self, **headers) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def stop(self) -> None:
        """Stop the server; its lifespan closes the inference service and the store."""
        self.server.should_exit = True
        self.thread.join(60)


def start_server(data_dir: Path, herder: dict | HerderSettings | None = None, **config) -> InferenceServer:
    """Given a data folder and herder settings (a dict: written to data/herder.json; HerderSettings:
    as `serve` passes its flags), serve it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(herder, HerderSettings):
        config["herder"] = herder
    elif herder is not None:
        (data_dir / "herder.json").write_text(json.dumps(herder))
    app = create_app(GatewayConfig(data_dir=data_dir, mine_interval=0, **config))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return InferenceServer(f"http://127.0.0.1:{port}", app, server, thread)
