"""The inference commands end to end, each in a fresh OS process: model add/list, run, replay."""

import dataclasses
import subprocess
import sys

import pytest

from inference.context import Inference
from inference.generation import token_hash
from inference.processes import call_for
from inference.sampling import SamplingParams
from permastore.store import Store

JOKER = "Tell a joke on the given topic, on one line"


def permastore(data, *args, check_rc=None):
    """Run `permastore --data DATA ARGS...` in a new interpreter; return (rc, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "permastore.cli.main", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stderr
    return done.returncode, done.stdout, done.stderr


def ids_from(stdout):
    found = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(":")
        if key in ("process", "message", "result"):
            found[key] = value.strip()
    return found


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def cli_model(data, tiny_gguf):
    _, out, _ = permastore(data, "model", "add", str(tiny_gguf), check_rc=0)
    return out.strip()


def test_model_add_and_list(data, tiny_gguf, cli_model):
    assert len(cli_model) == 43
    _, again, _ = permastore(data, "model", "add", str(tiny_gguf), check_rc=0)
    assert again.strip() == cli_model
    _, listing, _ = permastore(data, "model", "list", check_rc=0)
    assert listing.startswith(cli_model + "\ttiny-llama\tllama\tF16")


def test_run_then_replay_in_fresh_processes(data, cli_model):
    _, out, err = permastore(data, "run", cli_model, "cats", "--system", JOKER, "--max-tokens", "12", check_rc=0)
    ids = ids_from(out)
    assert set(ids) == {"process", "message", "result"}
    assert "seed:" in err
    rc, replayed, _ = permastore(data, "replay", ids["result"])
    assert rc == 0 and replayed.startswith("identical")
    rc, replayed, _ = permastore(data, "replay", ids["message"])
    assert rc == 0 and "identical" in replayed
    # A second call into the same process, then the whole process in nonce order.
    _, out2, _ = permastore(data, "run", cli_model, "dogs", "--process", ids["process"], "--seed", "3", check_rc=0)
    assert ids_from(out2)["process"] == ids["process"]
    rc, whole, _ = permastore(data, "replay", "--process", ids["process"])
    assert rc == 0
    assert whole.splitlines()[-1].startswith(f"identical: process {ids['process']}, 2 message(s)")


def test_seeded_runs_repeat_and_named_template(data, cli_model):
    outputs = []
    for _ in range(2):
        _, out, _ = permastore(data, "run", cli_model, "owls", "--seed", "9", "--chat-template", "chatml",
                               "--max-tokens", "8", check_rc=0)
        outputs.append(out.split("\nprocess:")[0])
    assert outputs[0] == outputs[1]


def test_replay_reports_first_differing_token(data, cli_model):
    _, out, _ = permastore(data, "run", cli_model, "cats", "--seed", "4", "--max-tokens", "10", check_rc=0)
    ids = ids_from(out)
    store = Store.open(data)
    inference = Inference.open(store)
    try:
        result = inference.records.load(ids["result"]).record
        process = inference.processes.get(ids["process"])
        message = inference.records.load(ids["message"]).record
        call = call_for(process, ids["message"], message)
        lie = list(result.token_ids)
        lie[2] = lie[2] + 1 if lie[2] < 300 else 5
        forged = dataclasses.replace(result, token_ids=lie, token_hash=token_hash(lie))
        forged_id = inference.records.write(forged)
        broken = dataclasses.replace(result, token_hash=token_hash([0]))
        broken_id = inference.records.write(broken)
        assert call.sampling["seed"] == 4
    finally:
        inference.close()
        store.close()
    rc, out, _ = permastore(data, "replay", forged_id)
    assert rc == 1
    assert f"at token 2: recorded token {lie[2]}" in out
    assert f"replayed token {result.token_ids[2]}" in out
    rc, out, err = permastore(data, "replay", broken_id)
    assert rc == 2
    assert err.strip() == f"permastore: Result {broken_id} is tampered: its token hash does not match its token IDs"


def test_identity_difference_is_said_before_running(data, cli_model):
    _, out, _ = permastore(data, "run", cli_model, "cats", "--max-tokens", "4", check_rc=0)
    ids = ids_from(out)
    store = Store.open(data)
    inference = Inference.open(store)
    try:
        # A process recorded on another machine: same model and settings, other CPU features.
        record = inference.records.load(ids["process"]).record
        foreign = dataclasses.replace(record, engine=dict(record.engine, cpu_features=["asimd", "neon"]))
        pid = inference.records.write(foreign)
        sent = inference.send(pid, "x", prompt="hi", sampling=SamplingParams(max_tokens=4))
    finally:
        inference.close()
        store.close()
    rc, out, _ = permastore(data, "replay", sent.result_id)
    lines = out.splitlines()
    assert lines[0] == "engine identity differs from the recorded one:"
    assert lines[1].startswith("  cpu_features: recorded ['asimd', 'neon']")
    assert lines[-1].startswith("identical") and rc == 0


@pytest.mark.parametrize("args, message", [
    (["model", "add", "/nonexistent.gguf"], "no such file"),
    (["replay", "nope"], "not a valid record ID"),
    (["replay", "A" * 43], "is not stored here"),
    (["run", "A" * 43, "hi"], "is not stored here"),
])
def test_bad_input_is_one_line_and_nonzero(data, args, message):
    rc, out, err = permastore(data, *args)
    assert rc != 0
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err


def test_bad_sampling_is_refused_before_anything_is_written(data, cli_model):
    rc, _, err = permastore(data, "run", cli_model, "hi", "--temperature", "-1")
    assert rc == 1 and err.strip() == "permastore: temperature must be >= 0"
    rc, _, err = permastore(data, "run", cli_model, "hi", "--chat-template", "nope")
    assert rc == 1 and "unknown chat template" in err
    rc, _, err = permastore(data, "run", cli_model, "word " * 600)
    assert rc == 1 and err.strip().startswith("permastore: prompt is") and "context holds 512" in err
    store = Store.open(data)
    inference = Inference.open(store)
    try:
        assert inference.records.query_ids([("Type", ["Message"])]) == []
        assert inference.records.query_ids([("Type", ["Process"])]) == []
    finally:
        inference.close()
        store.close()


def test_ids_starting_with_a_dash_are_ids():
    from permastore.cli.main import build_parser

    dash_id = "-" + "A" * 42
    parsed = build_parser().parse_args(["replay", dash_id])
    assert parsed.record_id == dash_id
    parsed = build_parser().parse_args(["replay", "--process", dash_id])
    assert parsed.process == dash_id
    parsed = build_parser().parse_args(["run", dash_id, "a prompt", "--process", dash_id])
    assert (parsed.model_id, parsed.prompt, parsed.process) == (dash_id, "a prompt", dash_id)


def test_negative_numbers_still_parse_as_numbers():
    from permastore.cli.main import build_parser

    parsed = build_parser().parse_args(["run", "A" * 43, "hi", "--temperature", "-1", "--seed", "-5"])
    assert (parsed.temperature, parsed.seed) == (-1.0, -5)
