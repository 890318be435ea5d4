"""@permaweb/aoconnect 0.0.98 (legacy mode, from npm) against a real `permastore serve`: spawn,
message, result, results, dryrun, a call without credit when fees are on, and replays of the AO
message by `POST /replay/{id}` and `permastore replay ID`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.interop.conftest import (
    NODE_MODULES,
    PERMASTORE,
    InteropServer,
    _permastore_url,
    _stop,
    _wait_for_info,
    _wait_for_url,
)

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
TINY_GGUF = REPO / "fixtures" / "tiny-llama.gguf"
AOCONNECT = NODE_MODULES / "@permaweb" / "aoconnect" / "package.json"
FEE_FLAGS = ["--fee-base", "100", "--fee-token", "2"]


def _model_add(data: Path) -> str:
    done = subprocess.run([str(PERMASTORE), "--data", str(data), "model", "add", str(TINY_GGUF)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def _serve(data: Path, log_path: Path, flags: list[str]) -> InteropServer:
    command = [str(PERMASTORE), "serve", "--data", str(data), "--host", "127.0.0.1", "--port", "0",
               "--mine-interval", "0", *flags]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = InteropServer(_wait_for_url(process, log_path, _permastore_url), process, log_path)
    _wait_for_info(server)
    return server


@pytest.fixture(scope="module")
def ao_node(tmp_path_factory, node_toolchain):
    """A node holding the tiny model, fees off; yields (server, data folder, model ID)."""
    assert AOCONNECT.is_file(), "@permaweb/aoconnect is missing: run `npm ci` in tests/interop"
    folder = tmp_path_factory.mktemp("ao-node")
    model_id = _model_add(folder / "data")
    server = _serve(folder / "data", folder / "serve.log", [])
    yield server, folder / "data", model_id
    _stop(server.process)


@pytest.fixture(scope="module")
def free_flow(ao_node, run_script):
    server, _, model_id = ao_node
    return run_script("aoconnect_flow.js", server.url, model_id, server=server)


def test_spawn_message_result_results_dryrun(free_flow, ao_node):
    """aoconnect's own calls work unchanged; the reply, results pages and dryrun are checked in the script."""
    server, _, _ = ao_node
    assert free_flow["units"]["mu"] == f"{server.url}/ao/mu"
    assert len(free_flow["process"]) == 43 and len(free_flow["messages"]) == 3
    assert free_flow["results"] == ["1", "2", "3"]
    assert free_flow["dryrun"] == free_flow["messages"][0]["text"]
    assert free_flow["schedulerLocation"]["Url"] == server.url
    for message in free_flow["messages"]:
        assert message["gas"] > 0 and message["record"]["result"]


def test_the_ao_message_is_bound_to_a_message_record(free_flow, ao_node):
    """The caller's signed item is stored; the node's Message record names it, with nonce and chain."""
    server, _, _ = ao_node
    first = free_flow["messages"][0]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        stored = client.get(f"/{first['id']}")
        assert stored.status_code == 200 and stored.text == first["prompt"]
        message = client.get(f"/{first['record']['message']}").json()
    assert message["request"] == first["id"] and message["nonce"] == 1
    assert message["caller"] == free_flow["owner"] and message["hash_chain"]


def test_a_spawn_with_system_prompt_and_chat_template_tags(free_flow, ao_node):
    """Model, System-Prompt and Chat-Template tags make the process; its calls render with that template."""
    server, _, model_id = ao_node
    chat = free_flow["chat"]
    assert chat["template"] == "chatml" and chat["systemPrompt"] == "You are a terse assistant."
    with httpx.Client(base_url=server.url, timeout=60) as client:
        process = client.get(f"/{chat['record']['process']}").json()
        message = client.get(f"/{chat['record']['message']}").json()
    assert process["model"] == model_id and process["request"] == chat["process"]
    assert process["chat_template"] == "chatml" and process["system_prompt"] == "You are a terse assistant."
    assert message["request"] == chat["message"]
    assert message["rendered_prompt"].startswith("<|im_start|>system\nYou are a terse assistant.<|im_end|>")


def test_errors_reach_aoconnect_as_ao_errors(free_flow):
    """Unknown action, a message to a non-process or to an unknown one are MU 4xx; an unknown message a
    CU 404 object; a tampered item is a 400 JSON error and nothing is stored for it."""
    assert free_flow["unknownAction"].startswith("400: ") and "unknown Action 'Eval'" in free_flow["unknownAction"]
    assert free_flow["wrongTarget"].startswith("400: ") and "is not a llama process" in free_flow["wrongTarget"]
    assert free_flow["unknownProcess"].startswith("404: ") and "is not known here" in free_flow["unknownProcess"]
    assert free_flow["missingResult"]["status"] == 404 and "was not sent to process" in free_flow["missingResult"]["error"]
    assert free_flow["tamperedByClient"] == "Error while communicating with MU: {}"  # aoconnect's own check
    post = free_flow["tamperedPost"]
    assert post["status"] == 400 and "not a valid signed ANS-104 data item" in post["body"]["error"]
    assert free_flow["tamperedResult"]["status"] == 404  # never stored, never run
    assert free_flow["badDryrun"]["status"] == 400 and "unknown Action 'Eval'" in free_flow["badDryrun"]["error"]


def test_the_ao_message_replays_over_http_and_on_the_command_line(free_flow, ao_node):
    """`POST /replay/{AO message ID}` and `permastore replay ID` replay it token for token."""
    server, data, _ = ao_node
    first, second = free_flow["messages"][0], free_flow["messages"][1]
    with httpx.Client(base_url=server.url, timeout=120) as client:
        reply = client.post(f"/replay/{second['id']}")
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["identical"] is True and report["message_id"] == second["record"]["message"]
    done = subprocess.run([str(PERMASTORE), "--data", str(data), "replay", first["id"]],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"identical: message {first['record']['message']} (nonce 1)")


def test_fees_on_a_call_without_credit_is_refused_then_a_credit_notice_funds_it(tmp_path, run_script):
    """With fees on, aoconnect's message() rejects with 402 and the amount; after a credit it goes through."""
    model_id = _model_add(tmp_path / "data")
    server = _serve(tmp_path / "data", tmp_path / "serve.log", FEE_FLAGS)
    try:
        flow = run_script("aoconnect_flow.js", server.url, model_id, "--paid", server=server)
    finally:
        _stop(server.process)
    assert flow["noCredit"].startswith("402: ") and '"needed":' in flow["noCredit"]
    assert "insufficient credit" in flow["noCredit"]
    assert 0 < flow["balance"] < 100000
    assert flow["creditNotice"] and flow["text"]
    assert "calls are charged" in flow["dryrunError"]


def test_a_restarted_node_keeps_its_module_and_scheduler_location(tmp_path):
    """Module and Scheduler-Location are written once per wallet and URL, not on every start."""
    data = tmp_path / "data"
    seen = []
    for number, url in enumerate(["http://ao.example:1984", "http://ao.example:1984", "http://moved.example"]):
        server = _serve(data, tmp_path / f"serve{number}.log", ["--public-url", url])
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                seen.append((client.get("/ao").json(), _count_ao_records(client)))
        finally:
            _stop(server.process)
    (first, count1), (second, count2), (third, count3) = seen
    assert first["mu"] == "http://ao.example:1984/ao/mu" and third["cu"] == "http://moved.example/ao/cu"
    assert first["module"] == second["module"] == third["module"]
    assert first["scheduler_location"] == second["scheduler_location"] != third["scheduler_location"]
    assert count1 == count2 == {"Module": 1, "Scheduler-Location": 1}
    assert count3 == {"Module": 1, "Scheduler-Location": 2}  # the node moved: a newer location


def _count_ao_records(client: httpx.Client) -> dict[str, int]:
    counts = {}
    for kind in ("Module", "Scheduler-Location"):
        query = '{ transactions(first: 100, tags: [{name: "Type", values: ["%s"]}]) { edges { node { id } } } }' % kind
        answer = client.post("/graphql", json={"query": query}).json()
        counts[kind] = len(answer["data"]["transactions"]["edges"])
    return counts
