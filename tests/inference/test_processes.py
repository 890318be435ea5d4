"""Processes through real llama.cpp and a real store: records written, found by tags, chained."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference import execution, records, replay
from inference.context import Inference
from inference.engine import Engine, EngineCache
from inference.errors import InvalidRequest, PromptTooLong
from inference.generation import token_hash
from inference.identity import engine_identity
from inference.processes import PreparedCall
from inference.sampling import EngineSettings, SamplingParams
from permastore.protocol import b64url
from permastore.store.records import Query

from .conftest import make_gguf

SETTINGS = EngineSettings(n_ctx=256, n_batch=32, n_ubatch=32, n_threads=1)
JOKER = "Tell a joke on the given topic, on one line"


def ids_tagged(store, **tags):
    page = store.query(Query(tags=[(name.replace("_", "-"), [value]) for name, value in tags.items()], first=100))
    return [info.id for info in page.items]


def load(inference, record_id):
    return inference.records.load(record_id).record


@pytest.fixture
def pid(inference, model_id):
    return inference.processes.spawn(model_id, SETTINGS, system_prompt=JOKER)


def test_spawn_records_model_engine_and_settings(inference, store, model_id, pid):
    assert ids_tagged(store, Type="Process", Model=model_id) == [pid]
    record = load(inference, pid)
    assert record.model == model_id
    assert record.engine == engine_identity()
    assert record.settings == SETTINGS.to_json()
    assert record.chat_template == "model"
    assert record.system_prompt == JOKER
    tags = {t.name.decode(): t.value.decode() for t in store.info(pid).tags}
    assert (tags["Data-Protocol"], tags["Type"]) == ("ao", "Process")


def test_send_writes_message_and_result_found_by_tags(inference, store, pid):
    result = inference.send(pid, "alice", messages=[{"role": "user", "content": "cats"}],
                            sampling=SamplingParams(max_tokens=12))
    assert ids_tagged(store, Type="Message", Process=pid) == [result.message_id]
    assert ids_tagged(store, Type="Result", Message=result.message_id) == [result.result_id]
    message = load(inference, result.message_id)
    assert message.caller == "alice"
    assert message.nonce == 1
    assert message.input == {"messages": [{"role": "user", "content": "cats"}]}
    assert message.rendered_prompt.startswith("<|im_start|>system\n" + JOKER)
    assert message.rendered_prompt.endswith("<|im_start|>assistant\n")
    assert message.sampling["seed"] is None and message.sampling["max_tokens"] == 12
    assert "</s>" in message.sampling["stop"]
    stored = load(inference, result.result_id)
    # No seed given: derived from the message ID, and the one used is recorded.
    assert stored.seed == result.seed == records.seed_from_message_id(result.message_id)
    assert stored.token_ids == list(result.token_ids)
    assert stored.token_hash == token_hash(result.token_ids)
    assert stored.text == result.text
    assert stored.completion_tokens == len(result.token_ids) <= 12


def test_recorded_call_matches_a_direct_engine_run(inference, store, pid, tiny_gguf):
    result = inference.send(pid, "bob", prompt="plain text", sampling=SamplingParams(seed=77, max_tokens=10))
    message = load(inference, result.message_id)
    assert message.rendered_prompt == JOKER + "\nplain text"
    assert message.sampling["seed"] == 77
    direct = Engine.from_path(tiny_gguf, SETTINGS)
    try:
        again = direct.generate(JOKER + "\nplain text", SamplingParams(seed=77, max_tokens=10))
    finally:
        direct.close()
    assert again.token_ids == result.token_ids


def test_nonces_count_up_and_chain_links(inference, store, pid):
    sent = [inference.send(pid, "c", prompt=f"p{i}", sampling=SamplingParams(max_tokens=2)) for i in range(3)]
    chain = records.initial_chain(pid)
    for nonce, call in enumerate(sent, start=1):
        message = load(inference, call.message_id)
        assert message.nonce == nonce
        assert message.previous == (sent[nonce - 2].message_id if nonce > 1 else None)
        chain = records.next_chain(chain, message.content_hash())
        assert message.hash_chain == b64url.encode(chain)
        tags = {t.name.decode(): t.value.decode() for t in store.info(call.message_id).tags}
        assert (tags["Nonce"], tags["Hash-Chain"]) == (str(nonce), message.hash_chain)


def test_nonce_continues_after_a_restart(inference, store, pid):
    inference.send(pid, "c", prompt="one", sampling=SamplingParams(max_tokens=2))
    fresh = Inference.open(store)  # a fresh server reads the last nonce back from the store
    try:
        second = fresh.send(pid, "c", prompt="two", sampling=SamplingParams(max_tokens=2))
    finally:
        fresh.close()
    assert load(inference, second.message_id).nonce == 2


def test_nonce_follows_messages_written_by_another_os_process(inference, store, pid):
    inference.send(pid, "c", prompt="one", sampling=SamplingParams(max_tokens=2))
    # Another OS process (e.g. `permastore run --process`) sends into the same process.
    script = (
        "import sys; from permastore.store import Store; from inference.context import Inference;"
        "from inference.sampling import SamplingParams;"
        "s = Store.open(sys.argv[1]); i = Inference.open(s);"
        "print(i.send(sys.argv[2], 'other', prompt='two', sampling=SamplingParams(max_tokens=2)).message_id);"
        "i.close(); s.close()"
    )
    subprocess.run([sys.executable, "-c", script, str(store.root), pid], check=True, capture_output=True, timeout=120)
    third = inference.send(pid, "c", prompt="three", sampling=SamplingParams(max_tokens=2))
    assert load(inference, third.message_id).nonce == 3
    assert replay.replay_process(inference, pid).identical


def test_split_steps_for_a_herder_worker(inference, store, pid):
    plan = inference.processes.plan(pid, messages=[{"role": "user", "content": "dogs"}],
                               sampling=SamplingParams(seed=5, max_tokens=8))
    assert plan.prompt_tokens > 10 and plan.max_tokens == 8
    call = inference.messages.prepare_message(plan, "carol", fee=1234)
    assert load(inference, call.message_id).fee == 1234
    pieces = []
    engines = EngineCache()
    try:
        out = execution.execute(PreparedCall.from_json(call.to_json()), engines, on_text=pieces.append).to_json()
    finally:
        engines.close()
    assert "".join(pieces) == out["text"]
    assert out["prompt_tokens"] == plan.prompt_tokens
    result = inference.messages.write_result(call, out)
    assert load(inference, result.result_id).token_ids == out["token_ids"]


def test_failure_is_recorded_as_an_error_result(inference, store, pid):
    plan = inference.processes.plan(pid, prompt="x", sampling=SamplingParams(max_tokens=2))
    call = inference.messages.prepare_message(plan, "dave")
    failure = inference.messages.write_failure(call, "worker died twice")
    record = load(inference, failure)
    assert record.finish_reason == "error" and record.message == call.message_id


def test_bad_calls_write_nothing(inference, store, pid):
    def messages_written():
        return len(ids_tagged(store, Type="Message"))

    with pytest.raises(PromptTooLong, match="context holds 256"):
        inference.send(pid, "e", prompt="word " * 300)
    with pytest.raises(InvalidRequest, match="exactly one"):
        inference.send(pid, "e", prompt="a", messages=[{"role": "user", "content": "b"}])
    with pytest.raises(InvalidRequest, match="role"):
        inference.send(pid, "e", messages=[{"role": "wizard", "content": "b"}])
    with pytest.raises(InvalidRequest, match="fee"):
        inference.send(pid, "e", prompt="a", fee=-1)
    with pytest.raises(InvalidRequest, match="caller"):
        inference.send(pid, "x" * 300, prompt="a")
    with pytest.raises(InvalidRequest, match="temperature"):
        inference.send(pid, "e", prompt="a", sampling=SamplingParams(temperature=-2))
    assert messages_written() == 0


def test_named_template_and_model_without_one(inference, store, tmp_path):
    plain_id = inference.models.add(make_gguf(tmp_path / "plain.gguf", chat_template=None, name="plain"))
    raw_pid = inference.processes.spawn(plain_id, SETTINGS)
    assert load(inference, raw_pid).chat_template is None
    with pytest.raises(InvalidRequest, match="no chat template"):
        inference.send(raw_pid, "f", messages=[{"role": "user", "content": "hi"}])
    phi_pid = inference.processes.spawn(plain_id, SETTINGS, system_prompt="S", chat_template="phi-3")
    result = inference.send(phi_pid, "f", messages=[{"role": "user", "content": "hi"}],
                            sampling=SamplingParams(max_tokens=3))
    assert load(inference, result.message_id).rendered_prompt == "<|system|>\nS<|end|>\n<|user|>\nhi<|end|>\n<|assistant|>\n"
    with pytest.raises(InvalidRequest, match="unknown chat template"):
        inference.processes.spawn(plain_id, SETTINGS, chat_template="nope")


def test_concurrent_messages_get_distinct_nonces_and_one_chain(inference, store, pid):
    def prepare(i):
        plan = inference.processes.plan(pid, prompt=f"call {i}", sampling=SamplingParams(max_tokens=2))
        return inference.messages.prepare_message(plan, f"caller-{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        calls = list(pool.map(prepare, range(16)))
    assert sorted(call.nonce for call in calls) == list(range(1, 17))
    messages = [(call.message_id, load(inference, call.message_id)) for call in calls]
    replay.check_chain(pid, messages)  # raises on a duplicate, a gap or a broken link
