"""Replay from records alone: identical calls, lying or tampered results, broken or gapped chains."""

import dataclasses
import io

import pytest

from inference import execution, records, replay
from inference.errors import RecordInvalid, RecordNotFound
from inference.generation import token_hash
from inference.herder.pool import PoolConfig, WorkerPool
from inference.sampling import EngineSettings, SamplingParams
from permastore.protocol import b64url
from permastore.protocol.ans104 import build_item
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.wallet import address_of

SETTINGS = EngineSettings(n_ctx=256, n_batch=32, n_ubatch=32, n_threads=1)


@pytest.fixture
def pid(inference, model_id):
    return inference.processes.spawn(model_id, SETTINGS, system_prompt="Tell a joke on the given topic, on one line")


def send(inference, pid, topic, **sampling):
    params = SamplingParams(**{"max_tokens": 12, **sampling})
    return inference.send(pid, "tester", messages=[{"role": "user", "content": topic}], sampling=params)


def execute(inference, call):
    return execution.execute(call, inference.engines)


def forge_result(inference, call, **changes):
    """Write a Result for `call` signed by the node, with fields changed (a lying or tampered record)."""
    generation = execute(inference, call)
    record = records.ResultRecord(
        message=call.message_id, process=call.process_id, nonce=call.nonce, seed=call.sampling["seed"],
        text=generation.text, token_ids=list(generation.token_ids), token_hash=generation.token_hash,
        prompt_tokens=generation.prompt_tokens, prompt_token_hash=generation.prompt_token_hash,
        completion_tokens=len(generation.token_ids), finish_reason=generation.finish_reason, timings={},
    )
    return inference.records.write(dataclasses.replace(record, **changes)), generation


def test_replay_by_result_and_by_message_is_identical(inference, store, pid):
    result = send(inference, pid, "cats")
    by_result = replay.replay_call(inference, result.result_id)
    by_message = replay.replay_call(inference, result.message_id)
    for report in (by_result, by_message):
        assert report.identical and report.first_difference is None
        assert report.recorded_tokens == report.replayed_tokens == len(result.token_ids)
        assert report.result_id == result.result_id


def test_replay_process_in_nonce_order(inference, store, pid):
    sent = [send(inference, pid, topic, seed=i) for i, topic in enumerate(["cats", "dogs", "tax"])]
    seen = []
    outcome = replay.replay_process(inference, pid, on_call=seen.append)
    assert outcome.identical
    assert [r.message_id for r in seen] == [s.message_id for s in sent]
    assert [r.nonce for r in seen] == [1, 2, 3]


def test_a_result_that_lies_is_found_at_its_first_differing_token(inference, store, pid):
    plan = inference.processes.plan(pid, messages=[{"role": "user", "content": "owls"}],
                               sampling=SamplingParams(seed=3, max_tokens=12, temperature=0.9))
    call = inference.messages.prepare_message(plan, "tester")
    true_tokens = list(execute(inference, call).token_ids)
    assert len(true_tokens) > 4
    lie = list(true_tokens)
    lie[4] = (lie[4] + 1) % 300 + 3
    forged_id, _ = forge_result(inference, call, token_ids=lie, token_hash=token_hash(lie))
    report = replay.replay_call(inference, forged_id)
    assert not report.identical
    assert report.first_difference == 4
    assert (report.recorded_token, report.replayed_token) == (lie[4], true_tokens[4])
    assert "at token 4" in report.summary()


def test_result_whose_hash_does_not_match_its_tokens_is_tampered(inference, store, pid):
    plan = inference.processes.plan(pid, prompt="hello", sampling=SamplingParams(max_tokens=6))
    call = inference.messages.prepare_message(plan, "tester")
    forged_id, _ = forge_result(inference, call, token_hash=token_hash([1, 2, 3]))
    with pytest.raises(RecordInvalid, match="token hash does not match"):
        replay.replay_call(inference, forged_id)


def test_result_with_a_seed_other_than_the_messages_is_tampered(inference, store, pid):
    plan = inference.processes.plan(pid, prompt="hello", sampling=SamplingParams(max_tokens=6, seed=10))
    call = inference.messages.prepare_message(plan, "tester")
    forged_id, _ = forge_result(inference, call, seed=11)
    with pytest.raises(RecordInvalid, match="seed 11"):
        replay.replay_call(inference, forged_id)


def test_message_without_result_is_reported_missing(inference, store, pid):
    send(inference, pid, "cats")
    plan = inference.processes.plan(pid, prompt="never answered", sampling=SamplingParams(max_tokens=3))
    call = inference.messages.prepare_message(plan, "tester")
    with pytest.raises(RecordNotFound, match=f"no Result record for message {call.message_id}"):
        replay.replay_call(inference, call.message_id)
    with pytest.raises(RecordNotFound, match="no Result record"):
        replay.replay_process(inference, pid)


def test_failed_call_is_skipped_not_compared(inference, store, pid):
    plan = inference.processes.plan(pid, prompt="x", sampling=SamplingParams(max_tokens=3))
    call = inference.messages.prepare_message(plan, "tester")
    inference.messages.write_failure(call, "worker died")
    report = replay.replay_call(inference, call.message_id)
    assert report.skipped and "worker died" in report.skipped


def write_message(inference, pid, nonce, previous_chain, prompt="forged", previous=None):
    draft = records.MessageRecord(
        process=pid, caller="mallory", nonce=nonce, input={"prompt": prompt},
        rendered_prompt="Tell a joke on the given topic, on one line\n" + prompt, parse_special=False,
        sampling=SamplingParams(max_tokens=3).to_json(), fee=0, previous=previous, hash_chain="",
    )
    chain = b64url.encode(records.next_chain(previous_chain, draft.content_hash()))
    message = dataclasses.replace(draft, hash_chain=chain)
    return inference.records.write(message), message


def test_broken_hash_chain_is_detected(inference, store, pid):
    first = send(inference, pid, "cats")
    # Nonce 2, naming message 1, but chained to the process start instead of to message 1.
    forged_id, _ = write_message(inference, pid, 2, records.initial_chain(pid), previous=first.message_id)
    with pytest.raises(RecordInvalid, match="hash chain broken at message " + forged_id):
        replay.replay_process(inference, pid)
    with pytest.raises(RecordInvalid, match="does not link"):
        replay.replay_call(inference, forged_id)
    assert replay.replay_call(inference, first.result_id).identical


def test_missing_message_in_the_chain_is_detected(inference, store, pid):
    first = send(inference, pid, "cats")
    chain1 = b64url.decode(inference.records.load(first.message_id).record.hash_chain)
    gap_id, _ = write_message(inference, pid, 3, chain1, previous="E" * 43)  # nonce 2 never written
    with pytest.raises(RecordNotFound, match="nonce 2 is missing"):
        replay.replay_process(inference, pid)
    with pytest.raises(RecordNotFound, match=r"nonce 2 \(E+\) is missing"):
        replay.replay_call(inference, gap_id)


def test_message_naming_the_wrong_predecessor_is_detected(inference, store, pid):
    first = send(inference, pid, "cats")
    second = send(inference, pid, "dogs")
    chain2 = b64url.decode(inference.records.load(second.message_id).record.hash_chain)
    # Nonce 3 with the right chain value, but it names message 1 as the one before it.
    forged_id, _ = write_message(inference, pid, 3, chain2, previous=first.message_id)
    with pytest.raises(RecordInvalid, match="names .* as its predecessor"):
        replay.replay_process(inference, pid)
    with pytest.raises(RecordInvalid, match="is not nonce 2"):
        replay.replay_call(inference, forged_id)


def test_duplicate_nonce_is_detected(inference, store, pid):
    send(inference, pid, "cats")
    write_message(inference, pid, 1, records.initial_chain(pid), prompt="twin")
    with pytest.raises(RecordInvalid, match="two messages with nonce 1"):
        replay.replay_process(inference, pid)


def test_records_signed_by_someone_else_are_not_part_of_the_process(inference, store, pid, tmp_path):
    result = send(inference, pid, "cats")
    stranger = Ed25519Signer(bytes(range(32)))
    body = records.canonical_json(records.record_json(inference.records.load(result.result_id).record))
    item = build_item(stranger, body, records.record_tags(inference.records.load(result.result_id).record))
    foreign = store.put_item(io.BytesIO(item)).id
    with pytest.raises(RecordInvalid, match="not the process owner"):
        replay.replay_call(inference, foreign)
    assert replay.replay_call(inference, result.message_id).result_id == result.result_id


def test_a_strangers_result_for_an_unanswered_message_is_not_its_result(inference, store, pid):
    plan = inference.processes.plan(pid, prompt="never answered", sampling=SamplingParams(max_tokens=3))
    call = inference.messages.prepare_message(plan, "tester")
    record = records.ResultRecord(
        message=call.message_id, process=pid, nonce=call.nonce, seed=call.sampling["seed"], text="forged",
        token_ids=[1], token_hash=token_hash([1]), prompt_tokens=1, prompt_token_hash="",
        completion_tokens=1, finish_reason="stop", timings={},
    )
    body = records.canonical_json(records.record_json(record))
    store.put_item(io.BytesIO(build_item(Ed25519Signer(bytes(range(32))), body, records.record_tags(record))))
    node = address_of(store.signer.owner)
    assert inference.records.query_ids([("Type", ["Result"]), ("Message", [call.message_id])])  # it is stored
    assert inference.records.find_result_for(call.message_id, node) is None
    with pytest.raises(RecordNotFound, match=f"no Result record for message {call.message_id}"):
        replay.replay_call(inference, call.message_id)


def test_corrupted_record_bytes_are_detected(inference, store, pid):
    result = send(inference, pid, "cats")
    # A record is small: its one chunk is kept inline in the index; the Result was the last
    # object written, so its chunk is the newest inline row.
    db = store.db
    newest = db.execute("SELECT id, stored FROM inline_chunks ORDER BY id DESC LIMIT 1").fetchone()
    stored = bytearray(newest[1])
    stored[-8] ^= 0x55
    with db:
        db.execute("UPDATE inline_chunks SET stored = ? WHERE id = ?", (bytes(stored), newest[0]))
    with pytest.raises(RecordInvalid, match="corrupt"):
        replay.replay_call(inference, result.result_id)


def test_engine_identity_difference_is_reported_before_running(inference, store, pid, monkeypatch):
    result = send(inference, pid, "cats")
    events = []
    real_identity = inference.identity()
    monkeypatch.setattr(inference, "identity", lambda: dict(real_identity, cpu_features=["neon"]))
    real_execute = replay.execute
    monkeypatch.setattr(replay, "execute", lambda *a, **k: events.append("run") or real_execute(*a, **k))
    report = replay.replay_call(inference, result.result_id, on_identity=lambda lines: events.append(lines))
    assert events[0] and events[0][0].startswith("cpu_features: recorded")
    assert events[1] == "run"
    assert report.identical


def test_unknown_and_wrong_ids(inference, store, pid):
    with pytest.raises(RecordNotFound, match="not stored here"):
        replay.replay_call(inference, "E" * 43)  # well-formed, absent
    with pytest.raises(RecordNotFound, match="not a valid record ID"):
        replay.replay_call(inference, "nope")
    with pytest.raises(RecordInvalid, match="use --process"):
        replay.replay_call(inference, pid)


def test_result_whose_text_does_not_match_its_tokens_differs(inference, store, pid):
    plan = inference.processes.plan(pid, prompt="hello", sampling=SamplingParams(max_tokens=6, seed=2))
    call = inference.messages.prepare_message(plan, "tester")
    forged_id, generation = forge_result(inference, call, text="a different story")
    report = replay.replay_call(inference, forged_id)
    assert not report.identical and report.first_difference is None
    assert report.replayed_tokens == len(generation.token_ids)
    assert "recorded text does not match" in report.summary()


@pytest.mark.parametrize("change", [
    {"repeat_penalty": 1.5}, {"frequency_penalty": 1.0}, {"presence_penalty": 1.0}, {"top_k": 3},
    {"top_p": 0.5}, {"min_p": 0.2}, {"temperature": 0.3},
])
def test_every_sampling_parameter_is_recorded_and_replayed(inference, store, pid, change):
    base = {"seed": 21, "max_tokens": 24, "temperature": 1.0, "min_p": 0.0}
    plain = send(inference, pid, "parrots", **base)
    changed = send(inference, pid, "parrots", **{**base, **change})
    assert changed.token_ids != plain.token_ids  # the parameter matters here...
    report = replay.replay_call(inference, changed.result_id)
    assert report.identical  # ...so replay used the recorded value


def test_replay_in_a_herder_worker_finds_the_same_difference(inference, store, pid):
    plan = inference.processes.plan(pid, messages=[{"role": "user", "content": "owls"}],
                               sampling=SamplingParams(seed=3, max_tokens=12, temperature=0.9))
    call = inference.messages.prepare_message(plan, "tester")
    true_tokens = list(execute(inference, call).token_ids)
    lie = list(true_tokens)
    lie[4] = (lie[4] + 1) % 300 + 3
    forged_id, _ = forge_result(inference, call, token_ids=lie, token_hash=token_hash(lie))
    honest = send(inference, pid, "cats")
    here = replay.replay_call(inference, forged_id)
    herder = WorkerPool(PoolConfig(workers=1)).start()
    try:
        in_worker = replay.replay_call(inference, forged_id, runner=replay.herder_runner(herder))
        honest_in_worker = replay.replay_call(inference, honest.result_id, runner=replay.herder_runner(herder))
    finally:
        herder.close()
    assert in_worker == here and in_worker.first_difference == 4
    assert in_worker.recorded_piece is not None and in_worker.replayed_piece is not None
    assert honest_in_worker.identical
