"""The inference commands end to end, each in a fresh OS process: model add/list, run, replay."""

import dataclasses
import os
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


@pytest.fixture
def initialised(data):
    """A data folder holding an empty store (`permastore init`)."""
    permastore(data, "init", check_rc=0)
    return data


@pytest.mark.parametrize("args, message", [
    (["model", "add", "/nonexistent.gguf"], "no such file"),
    (["replay", "nope"], "not a valid record ID"),
    (["replay", "A" * 43], "is not stored here"),
    (["run", "A" * 43, "hi"], "is not stored here"),
])
def test_bad_input_is_one_line_and_nonzero(initialised, args, message):
    rc, out, err = permastore(initialised, *args)
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


@pytest.mark.parametrize("args", [
    ["model", "list"],
    ["replay", "A" * 43],
    ["replay", "--process", "A" * 43],
])
def test_reading_commands_need_a_store_and_create_nothing(tmp_path, args):
    missing = tmp_path / "typo"
    rc, out, err = permastore(missing, *args)
    assert rc == 1 and out == ""
    assert err.strip().startswith(f"permastore: no store at {missing}")
    assert not missing.exists()
    # A folder that exists but holds no store is left as it was, too.
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = permastore(empty, *args)
    assert rc == 1 and "no store at" in err
    assert list(empty.iterdir()) == []


def test_writing_commands_create_the_store(tmp_path, tiny_gguf):
    fresh = tmp_path / "fresh"
    _, model_id, _ = permastore(fresh, "model", "add", str(tiny_gguf), check_rc=0)
    assert (fresh / "index.sqlite").is_file()
    _, listing, _ = permastore(fresh, "model", "list", check_rc=0)
    assert listing.startswith(model_id.strip())


def test_data_after_the_command_and_dash_ids_reach_the_handlers(data, cli_model):
    dash_id = "-" + "A" * 42
    done = subprocess.run([sys.executable, "-m", "permastore.cli.main", "replay", dash_id, "--data", str(data)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == f"permastore: record {dash_id} is not stored here"


@pytest.mark.parametrize("name, body, kind", [
    ("notes.txt", b"hello\n", "text/plain, 6 bytes"),
    ("point.json", b'{"a": 1}', "application/json, 8 bytes"),  # JSON, but no record
])
def test_replaying_stored_data_that_is_no_record_says_so(data, tmp_path, name, body, kind):
    """Issue 10 point 12: not `record is not JSON: Expecting value...`, but what the ID is."""
    (tmp_path / name).write_bytes(body)
    _, out, _ = permastore(data, "put", str(tmp_path / name), check_rc=0)
    object_id = out.split()[-1]
    for args in (["replay", object_id], ["replay", "--process", object_id]):
        rc, out, err = permastore(data, *args)
        assert rc != 0 and out == ""
        assert err.strip() == (f"permastore: {object_id} is not an inference record (a Process, Message or "
                               f"Result): it is stored data ({kind})")


LOAD_PAST_TRAINING_CONTEXT = """
import sys
from inference.llama_adapter import load_llama
from inference.sampling import EngineSettings
load_llama(sys.argv[1], EngineSettings(n_ctx=1024, n_threads=1))  # the tiny model was trained on 512
"""


@pytest.mark.parametrize("level, shown", [(None, False), ("error", False), ("warn", True), ("info", True)])
def test_llama_cpp_warnings_are_shown_only_at_the_level_asked_for(tiny_gguf, level, shown):
    """Issue 10 point 12: a llama.cpp warning at context creation (as Gemma 3's `llama_kv_cache_iswa:
    using full-size SWA cache` on every load) reaches stderr only from PERMASTORE_LLAMA_LOG=warn."""
    env = {k: v for k, v in os.environ.items() if k != "PERMASTORE_LLAMA_LOG"}
    if level:
        env["PERMASTORE_LLAMA_LOG"] = level
    done = subprocess.run([sys.executable, "-c", LOAD_PAST_TRAINING_CONTEXT, str(tiny_gguf)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("n_ctx_train (512) -- possible training context overflow" in done.stderr) == shown, done.stderr


def test_run_and_replay_print_no_llama_cpp_lines_unless_verbose(data, cli_model):
    rc, out, err = permastore(data, "run", cli_model, "cats", "--max-tokens", "2", "--seed", "1")
    assert rc == 0, err
    assert "llama_" not in err and err.splitlines()[-1].startswith("seed: 1  tokens:"), err
    result = ids_from(out)["result"]
    rc, out, err = permastore(data, "replay", result)
    assert rc == 0 and out.startswith("identical") and "llama_" not in err, err
    for args in (["run", cli_model, "cats", "--max-tokens", "2", "-v"], ["replay", result, "-v"]):
        rc, out, err = permastore(data, *args)
        assert rc == 0 and "llama_context: n_ctx" in err, err
