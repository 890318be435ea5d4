"""The `request` field that binds a record to a caller's AO item: absent, records keep their exact
bytes and tags; present, it is an item ID and a tag; never null. Pure functions, no store."""

from __future__ import annotations

import pytest

from inference import records
from inference.ao.protocol import AoTags, inference_options, read_item, spawn_options
from inference.errors import InvalidRequest, RecordInvalid
from permastore.protocol import ans104, b64url
from permastore.protocol.tags import Tag

PID = b64url.encode(bytes(range(32)))
ITEM = b64url.encode(bytes(range(1, 33)))
# The Message record's fields before `request` existed, in the order its JSON names them.
MESSAGE_FIELDS_BEFORE = ["process", "caller", "nonce", "input", "rendered_prompt", "parse_special", "sampling",
                         "fee", "previous", "hash_chain"]


def message(**extra) -> records.MessageRecord:
    return records.MessageRecord(
        process=PID, caller="me", nonce=1, input={"prompt": "hi"}, rendered_prompt="hi", parse_special=False,
        sampling={"seed": 3}, fee=0, previous=None, hash_chain="abc", **extra)


def test_a_record_without_request_has_the_bytes_and_tags_it_had_before():
    record = message()
    before = {name: getattr(record, name) for name in MESSAGE_FIELDS_BEFORE}
    before.update(type="Message", version=records.RECORD_VERSION)
    assert records.canonical_json(records.record_json(record)) == records.canonical_json(before)
    assert "Request" not in {t.name.decode() for t in records.record_tags(record)}
    assert records.parse_record(records.canonical_json(before), "Message") == record


def test_a_bound_record_carries_the_item_id_in_its_json_and_tags_and_chain():
    bound = message(request=ITEM)
    body = records.record_json(bound)
    assert body["request"] == ITEM
    assert (b"Request", ITEM.encode()) in {(t.name, t.value) for t in records.record_tags(bound)}
    assert records.parse_record(records.canonical_json(body), "Message") == bound
    assert bound.content_hash() != message().content_hash()  # the chain covers the binding


@pytest.mark.parametrize("value, reason", [(None, "never null"), ("not-an-id", "must be an item ID"),
                                           (7, "must be str")])
def test_a_bad_request_field_is_refused(value, reason):
    body = {**records.record_json(message()), "request": value}
    with pytest.raises(RecordInvalid, match=reason):
        records.parse_record(records.canonical_json(body), "Message")


def test_a_process_record_binds_its_spawn_the_same_way():
    process = records.ProcessRecord(model=PID, engine={}, settings={}, chat_template=None, chat_template_sha256=None,
                                    system_prompt=None)
    assert "request" not in records.record_json(process)
    bound = records.ProcessRecord(**{**process.__dict__, "request": ITEM})
    assert records.parse_record(records.canonical_json(records.record_json(bound)), "Process") == bound
    assert ("Request", ITEM) in bound.tags()


def test_aoconnect_tag_order_reads_the_last_copy():
    # aoconnect appends its own Module / Scheduler after a caller's copies without removing them.
    tags = AoTags((("Module", "caller's"), ("Model", PID), ("Data-Protocol", "ao"), ("Type", "Process"),
                   ("Module", "M" * 43), ("Scheduler", "S" * 43)))
    assert tags.last("Module") == "M" * 43 and tags.all("Module") == ["caller's", "M" * 43]


def test_inference_tags_become_sampling_parameters():
    tags = AoTags((("Action", "Inference"), ("Max-Tokens", "9"), ("Seed", "4"), ("Temperature", "0.5"),
                   ("Top-K", "3"), ("Stop", "a"), ("Stop", "b"), ("Payment", "120"), ("Unrelated", "x")))
    options = inference_options(tags, b"hello")
    assert options.sampling == {"max_tokens": 9, "seed": 4, "temperature": 0.5, "top_k": 3, "stop": ["a", "b"]}
    assert options.text == "hello" and options.payment == 120
    with pytest.raises(InvalidRequest, match="tag Top-K must be an integer"):
        inference_options(AoTags((("Action", "Inference"), ("Top-K", "1e3"))), b"x")


def test_a_spawn_without_data_has_no_system_prompt(tmp_path):
    from permastore.protocol.signers import RsaSigner
    from permastore.protocol.wallet import generate_jwk

    signer = RsaSigner(generate_jwk())
    tags = [Tag.text(n, v) for n, v in (("Model", PID), ("Data-Protocol", "ao"), ("Type", "Process"),
                                         ("Module", "M" * 43), ("Scheduler", "S" * 43))]
    item = read_item(ans104.build_item(signer, b" ", tags))
    options = spawn_options(item, "M" * 43, "S" * 43)
    assert options.system_prompt is None and options.model == PID and not options.raw_prompts
    with_data = read_item(ans104.build_item(signer, b"Sois bref.", tags))
    assert spawn_options(with_data, "M" * 43, "S" * 43).system_prompt == "Sois bref."
