"""A model stored on one node is loaded by ID on another, read through (verified) from the first."""

import subprocess
import sys

import pytest

from inference import models
from inference.context import Inference
from inference.errors import ModelNotFound
from inference.sampling import EngineSettings, SamplingParams
from permastore.sources import ReadThroughSource, UpstreamSource
from permastore.store import Store
from tests.helpers.servers import start_server


@pytest.fixture
def upstream(tmp_path, tiny_gguf):
    data = tmp_path / "upstream"
    store = Store.open(data)
    inference = Inference.open(store)
    try:
        model_id = inference.models.add(tiny_gguf)
    finally:
        inference.close()
        store.close()
    server = start_server(data, tmp_path / "upstream.log")
    yield server.url, model_id
    server.stop()


def test_model_is_fetched_verified_and_run_by_id(store, upstream, tiny_gguf):
    url, model_id = upstream
    assert store.info(model_id) is None
    inference = Inference.open(store, source=ReadThroughSource(UpstreamSource(url), store))
    try:
        path = inference.models.resolve(model_id)
        assert path.read_bytes() == tiny_gguf.read_bytes()
        assert models.tag_dict(store.info(model_id))["Type"] == "model"  # the upstream's signed item, tags and all
        pid = inference.processes.spawn(model_id, EngineSettings(n_ctx=128, n_batch=32, n_ubatch=32, n_threads=1))
        result = inference.send(pid, "x", prompt="hi", sampling=SamplingParams(seed=1, max_tokens=4))
        assert result.token_ids
    finally:
        inference.close()


def test_unknown_model_upstream_is_not_found(store, upstream):
    url, _ = upstream
    inference = Inference.open(store, source=ReadThroughSource(UpstreamSource(url), store))
    try:
        with pytest.raises(ModelNotFound, match="neither stored here nor upstream"):
            inference.models.resolve("E" * 43)
    finally:
        inference.close()


def test_cli_run_with_upstream(tmp_path, upstream):
    url, model_id = upstream
    done = subprocess.run(
        [sys.executable, "-m", "permastore.cli.main", "--data", str(tmp_path / "local"), "run", model_id, "hi",
         "--upstream", url, "--max-tokens", "4", "--seed", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "result:" in done.stdout


def test_replay_on_another_node_from_records_fetched_by_id(tmp_path, tiny_gguf):
    """Node A runs two calls; node B, holding nothing, replays the second by its Result ID alone."""
    data = tmp_path / "node-a"
    store = Store.open(data)
    inference = Inference.open(store)
    try:
        model_id = inference.models.add(tiny_gguf)
        pid = inference.processes.spawn(model_id, EngineSettings(n_ctx=128, n_batch=32, n_ubatch=32, n_threads=1))
        inference.send(pid, "x", prompt="first", sampling=SamplingParams(max_tokens=4))
        second = inference.send(pid, "x", prompt="second", sampling=SamplingParams(max_tokens=6))
    finally:
        inference.close()
        store.close()
    server = start_server(data, tmp_path / "node-a.log")
    try:
        local = tmp_path / "node-b"
        done = subprocess.run(
            [sys.executable, "-m", "permastore.cli.main", "--data", str(local), "replay", second.result_id,
             "--upstream", server.url],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].startswith(f"identical: message {second.message_id} (nonce 2)")
        # Node B now holds the records it checked (and the model), each verified against its signature.
        node_b = Store.open(local)
        try:
            held = {second.result_id, second.message_id, pid, model_id}
            assert all(node_b.info(i) is not None for i in held)
        finally:
            node_b.close()
    finally:
        server.stop()
