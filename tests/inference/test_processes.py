"""Processes through real llama.cpp and a real store: records written, found by tags, chained."""

import pytest

from inference import processes, records
from inference.engine import Engine, EngineSettings, SamplingParams, engine_identity, token_hash
from inference.errors import InvalidRequest, PromptTooLong
from permastore.protocol import b64url
from permastore.store.records import Query

from .conftest import make_gguf

SETTINGS = EngineSettings(n_ctx=256, n_batch=32, n_ubatch=32, n_threads=1)
JOKER = "Tell a joke on the given topic, on one line"


def ids_tagged(store, **tags):
    page = store.query(Query(tags=[(name.replace("_", "-"), [value]) for name, value in tags.items()], first=100))
    return [info.id for info in page.items]


def load(store, record_id):
    return records.load_record(store, record_id).record


@pytest.fixture
def pid(store, model_id):
    return processes.spawn(store, model_id, SETTINGS, system_prompt=JOKER)


def test_spawn_records_model_engine_and_settings(store, model_id, pid):
    assert ids_tagged(store, Type="Process", Model=model_id) == [pid]
    record = load(store, pid)
    assert record.model == model_id
    assert record.engine == engine_identity()
    assert record.settings == SETTINGS.to_json()
    assert record.chat_template == "model"
    assert record.system_prompt == JOKER
    tags = {t.name.decode(): t.value.decode() for t in store.info(pid).tags}
    assert (tags["Data-Protocol"], tags["Type"]) == ("ao", "Process")


def test_send_writes_message_and_result_found_by_tags(store, pid):
    result = processes.send(store, pid, "alice", messages=[{"role": "user", "content": "cats"}],
                            sampling=SamplingParams(max_tokens=12))
    assert ids_tagged(store, Type="Message", Process=pid) == [result.message_id]
    assert ids_tagged(store, Type="Result", Message=result.message_id) == [result.result_id]
    message = load(store, result.message_id)
    assert message.caller == "alice"
    assert message.nonce == 1
    assert message.input == {"messages": [{"role": "user", "content": "cats"}]}
    assert message.rendered_prompt.startswith("<|im_start|>system\n" + JOKER)
    assert message.rendered_prompt.endswith("<|im_start|>assistant\n")
    assert message.sampling["seed"] is None and message.sampling["max_tokens"] == 12
    assert "</s>" in message.sampling["stop"]
    stored = load(store, result.result_id)
    # No seed given: derived from the message ID, and the one used is recorded.
    assert stored.seed == result.seed == records.seed_from_message_id(result.message_id)
    assert stored.token_ids == list(result.token_ids)
    assert stored.token_hash == token_hash(result.token_ids)
    assert stored.text == result.text
    assert stored.completion_tokens == len(result.token_ids) <= 12


def test_recorded_call_matches_a_direct_engine_run(store, pid, tiny_gguf):
    result = processes.send(store, pid, "bob", prompt="plain text", sampling=SamplingParams(seed=77, max_tokens=10))
    message = load(store, result.message_id)
    assert message.rendered_prompt == JOKER + "\nplain text"
    assert message.sampling["seed"] == 77
    direct = Engine.from_path(tiny_gguf, SETTINGS)
    try:
        again = direct.generate(JOKER + "\nplain text", SamplingParams(seed=77, max_tokens=10))
    finally:
        direct.close()
    assert again.token_ids == result.token_ids


def test_nonces_count_up_and_chain_links(store, pid):
    sent = [processes.send(store, pid, "c", prompt=f"p{i}", sampling=SamplingParams(max_tokens=2)) for i in range(3)]
    chain = records.initial_chain(pid)
    for nonce, call in enumerate(sent, start=1):
        message = load(store, call.message_id)
        assert message.nonce == nonce
        assert message.previous == (sent[nonce - 2].message_id if nonce > 1 else None)
        chain = records.next_chain(chain, message.content_hash())
        assert message.hash_chain == b64url.encode(chain)
        tags = {t.name.decode(): t.value.decode() for t in store.info(call.message_id).tags}
        assert (tags["Nonce"], tags["Hash-Chain"]) == (str(nonce), message.hash_chain)


def test_nonce_continues_after_a_restart(store, pid):
    processes.send(store, pid, "c", prompt="one", sampling=SamplingParams(max_tokens=2))
    processes._chains.clear()  # a fresh server reads the last nonce back from the store
    second = processes.send(store, pid, "c", prompt="two", sampling=SamplingParams(max_tokens=2))
    assert load(store, second.message_id).nonce == 2


def test_nonce_follows_messages_written_by_another_os_process(store, pid):
    import subprocess
    import sys

    processes.send(store, pid, "c", prompt="one", sampling=SamplingParams(max_tokens=2))
    # Another OS process (e.g. `permastore run --process`) sends into the same process.
    script = (
        "import sys; from permastore.store import Store; from inference import processes;"
        "from inference.engine import SamplingParams;"
        "s = Store.open(sys.argv[1]);"
        "print(processes.send(s, sys.argv[2], 'other', prompt='two', sampling=SamplingParams(max_tokens=2)).message_id);"
        "s.close()"
    )
    subprocess.run([sys.executable, "-c", script, str(store.root), pid], check=True, capture_output=True, timeout=120)
    third = processes.send(store, pid, "c", prompt="three", sampling=SamplingParams(max_tokens=2))
    assert load(store, third.message_id).nonce == 3
    from inference import replay

    assert replay.replay_process(store, pid).identical


def test_split_steps_for_a_herder_worker(store, pid):
    plan = processes.plan_call(store, pid, messages=[{"role": "user", "content": "dogs"}],
                               sampling=SamplingParams(seed=5, max_tokens=8))
    assert plan.prompt_tokens > 10 and plan.max_tokens == 8
    call = processes.prepare_message(store, plan, "carol", fee=1234)
    assert load(store, call.message_id).fee == 1234
    pieces = []
    out = processes.execute_job(processes.PreparedCall.from_json(call.to_json()).to_json(), pieces.append)
    assert "".join(pieces) == out["text"]
    assert out["prompt_tokens"] == plan.prompt_tokens
    result = processes.write_result(store, call, out)
    assert load(store, result.result_id).token_ids == out["token_ids"]


def test_failure_is_recorded_as_an_error_result(store, pid):
    plan = processes.plan_call(store, pid, prompt="x", sampling=SamplingParams(max_tokens=2))
    call = processes.prepare_message(store, plan, "dave")
    failure = processes.write_failure(store, call, "worker died twice")
    record = load(store, failure)
    assert record.finish_reason == "error" and record.message == call.message_id


def test_bad_calls_write_nothing(store, pid):
    def messages_written():
        return len(ids_tagged(store, Type="Message"))

    with pytest.raises(PromptTooLong, match="context holds 256"):
        processes.send(store, pid, "e", prompt="word " * 300)
    with pytest.raises(InvalidRequest, match="exactly one"):
        processes.send(store, pid, "e", prompt="a", messages=[{"role": "user", "content": "b"}])
    with pytest.raises(InvalidRequest, match="role"):
        processes.send(store, pid, "e", messages=[{"role": "wizard", "content": "b"}])
    with pytest.raises(InvalidRequest, match="fee"):
        processes.send(store, pid, "e", prompt="a", fee=-1)
    with pytest.raises(InvalidRequest, match="caller"):
        processes.send(store, pid, "x" * 300, prompt="a")
    with pytest.raises(InvalidRequest, match="temperature"):
        processes.send(store, pid, "e", prompt="a", sampling=SamplingParams(temperature=-2))
    assert messages_written() == 0


def test_named_template_and_model_without_one(store, tmp_path):
    from inference.models import add_model

    plain_id = add_model(store, make_gguf(tmp_path / "plain.gguf", chat_template=None, name="plain"))
    raw_pid = processes.spawn(store, plain_id, SETTINGS)
    assert load(store, raw_pid).chat_template is None
    with pytest.raises(InvalidRequest, match="no chat template"):
        processes.send(store, raw_pid, "f", messages=[{"role": "user", "content": "hi"}])
    phi_pid = processes.spawn(store, plain_id, SETTINGS, system_prompt="S", chat_template="phi-3")
    result = processes.send(store, phi_pid, "f", messages=[{"role": "user", "content": "hi"}],
                            sampling=SamplingParams(max_tokens=3))
    assert load(store, result.message_id).rendered_prompt == "<|system|>\nS<|end|>\n<|user|>\nhi<|end|>\n<|assistant|>\n"
    with pytest.raises(InvalidRequest, match="unknown chat template"):
        processes.spawn(store, plain_id, SETTINGS, chat_template="nope")


def test_concurrent_messages_get_distinct_nonces_and_one_chain(store, pid):
    from concurrent.futures import ThreadPoolExecutor

    from inference import replay

    def prepare(i):
        plan = processes.plan_call(store, pid, prompt=f"call {i}", sampling=SamplingParams(max_tokens=2))
        return processes.prepare_message(store, plan, f"caller-{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        calls = list(pool.map(prepare, range(16)))
    assert sorted(call.nonce for call in calls) == list(range(1, 17))
    messages = [(call.message_id, load(store, call.message_id)) for call in calls]
    replay.check_chain(pid, messages)  # raises on a duplicate, a gap or a broken link
