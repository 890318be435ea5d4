"""Record JSON and the hash chain as pure functions (no store)."""

import hashlib
import json

import pytest

from inference import records
from inference.errors import RecordInvalid
from permastore.protocol import b64url

PID = b64url.encode(bytes(range(32)))


def message(nonce=1, prompt="hi", chain=""):
    return records.MessageRecord(
        process=PID, caller="me", nonce=nonce, input={"prompt": prompt}, rendered_prompt=prompt,
        parse_special=False, sampling={"seed": None, "temperature": 0.8}, fee=0, previous=None, hash_chain=chain,
    )


def test_canonical_json_is_sorted_compact_utf8():
    assert records.canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        records.canonical_json({"x": float("nan")})


def test_chain_starts_at_the_process_id_and_links():
    first = message(1)
    chain1 = records.next_chain(records.initial_chain(PID), first.content_hash())
    assert chain1 == hashlib.sha256(bytes(range(32)) + first.content_hash()).digest()
    second = message(2, "again")
    chain2 = records.next_chain(chain1, second.content_hash())
    assert chain2 != chain1


def test_content_hash_ignores_the_chain_value_only():
    assert message(chain="x").content_hash() == message(chain="y").content_hash()
    assert message(prompt="a").content_hash() != message(prompt="b").content_hash()


def test_seed_from_message_id_is_31_bits_of_the_id():
    mid = b64url.encode(b"\xff\xff\xff\xff" + bytes(28))
    assert records.seed_from_message_id(mid) == 0x7FFFFFFF
    assert records.seed_from_message_id(PID) == 0x00010203


def test_parse_round_trip():
    record = message(chain="abc")
    data = records.canonical_json(records.record_json(record))
    assert records.parse_record(data, "Message") == record


@pytest.mark.parametrize("mutate, reason", [
    (lambda body: body.pop("nonce"), "missing"),
    (lambda body: body.update(extra=1), "unexpected"),
    (lambda body: body.update(nonce="1"), "nonce must be int"),
    (lambda body: body.update(nonce=True), "nonce must be an integer"),
    (lambda body: body.update(input="text"), "input must be dict"),
    (lambda body: body.update(type="Bogus"), "unknown record type"),
    (lambda body: body.update(version=99), "version"),
])
def test_malformed_records_are_refused(mutate, reason):
    body = records.record_json(message())
    mutate(body)
    with pytest.raises(RecordInvalid, match=reason):
        records.parse_record(json.dumps(body).encode())


def test_wrong_record_type_is_refused():
    data = records.canonical_json(records.record_json(message()))
    with pytest.raises(RecordInvalid, match="expected a Result record"):
        records.parse_record(data, "Result")


def test_not_json_is_refused():
    with pytest.raises(RecordInvalid, match="not JSON"):
        records.parse_record(b"\xff\x00")


def test_tags_are_ao_style():
    tags = {t.name.decode(): t.value.decode() for t in records.record_tags(message(nonce=7, chain="C"))}
    assert tags["Data-Protocol"] == "ao"
    assert tags["Type"] == "Message"
    assert tags["Process"] == PID
    assert tags["Nonce"] == "7"
    assert tags["Hash-Chain"] == "C"


@pytest.mark.parametrize("tokens", [[-1], [1 << 40], [True], ["7"]])
def test_result_token_ids_must_be_int32(tokens):
    record = records.ResultRecord(
        message=PID, process=PID, nonce=1, seed=1, text="", token_ids=tokens, token_hash="", prompt_tokens=1,
        prompt_token_hash="", completion_tokens=1, finish_reason="stop", timings={},
    )
    with pytest.raises(RecordInvalid, match="token_ids"):
        records.parse_record(records.canonical_json(records.record_json(record)))
