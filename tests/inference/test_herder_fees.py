"""Fee formula, quotes and multipliers (inference.fees) and the herder's queue order."""

import pytest

from inference.fees import (
    FEE_BUMP,
    FeeError,
    FeeSchedule,
    multiplier_of,
    needed_fee,
    quote,
)
from inference.herder.calls import Call, CallQueue
from inference.settings import HerderSettings


def test_needed_fee_is_base_plus_token_fee_times_prompt_and_max_tokens():
    schedule = FeeSchedule(fee_base=100, fee_token=3)
    assert needed_fee(schedule, prompt_tokens=7, max_tokens=10) == 100 + 3 * 17
    assert needed_fee(schedule, prompt_tokens=0, max_tokens=0) == 100


def test_fees_off_costs_nothing():
    schedule = FeeSchedule()
    assert not schedule.enabled
    assert needed_fee(schedule, 500, 500) == 0
    assert quote(0, 3.0, 10) == 0
    assert multiplier_of(0, 0) == 1.0


def test_quote_is_needed_times_last_multiplier():
    assert quote(1000, 1.0, queue_length=0) == 1000
    assert quote(1000, 2.5, queue_length=0) == 2500


def test_quote_is_bumped_while_the_queue_is_not_empty():
    assert FEE_BUMP == 1.005
    assert quote(1000, 1.0, queue_length=1) == 1005
    assert quote(1000, 2.0, queue_length=3) == 2010
    # Rounded up: paying the quote never buys less than the quoted multiplier.
    assert quote(101, 1.0, queue_length=1) == 102
    assert multiplier_of(quote(101, 1.0, 1), 101) >= FEE_BUMP


def test_multiplier_is_payment_over_needed():
    assert multiplier_of(150, 100) == 1.5
    assert multiplier_of(100, 100) == 1.0


def test_underpayment_and_bad_counts_are_refused():
    with pytest.raises(FeeError, match="below the needed fee 100"):
        multiplier_of(99, 100)
    with pytest.raises(FeeError):
        needed_fee(FeeSchedule(1, 1), -1, 5)
    with pytest.raises(FeeError):
        FeeSchedule(fee_base=-1)


def _call(multiplier: float, name: str) -> Call:
    return Call(job=print, payload=name, multiplier=multiplier)


def test_queue_orders_by_multiplier_then_arrival():
    q = CallQueue()
    for multiplier, name in [(1.0, "a"), (2.0, "b"), (1.0, "c"), (3.0, "d"), (2.0, "e"), (1.0, "f")]:
        q.put(_call(multiplier, name))
    assert len(q) == 6
    order = [q.get(timeout=0).payload for _ in range(6)]
    assert order == ["d", "b", "e", "a", "c", "f"]
    assert q.get(timeout=0) is None


def test_retried_call_keeps_its_place_among_equals():
    q = CallQueue()
    first, second, third = _call(1.0, "first"), _call(1.0, "second"), _call(1.0, "third")
    for call in (first, second, third):
        q.put(call)
    taken = q.get(timeout=0)
    assert taken is first
    q.put_back(taken)  # its worker died: it goes back ahead of later arrivals
    assert [q.get(timeout=0).payload for _ in range(3)] == ["first", "second", "third"]


def test_drained_queue_refuses_new_calls():
    q = CallQueue()
    q.put(_call(1.0, "left"))
    left = q.drain()
    assert [c.payload for c in left] == ["left"]
    with pytest.raises(Exception, match="shutting down"):
        q.put(_call(1.0, "late"))


def test_config_precedence_file_env_overrides(tmp_path, monkeypatch):
    (tmp_path / "herder.json").write_text('{"fee_base": 5, "fee_token": 1, "workers": 3}')
    monkeypatch.setenv("PERMASTORE_FEE_TOKEN", "2")
    monkeypatch.setenv("PERMASTORE_REQUIRE_KEYS", "true")
    config = HerderSettings.load(tmp_path, workers=2, call_timeout_s=None)
    assert (config.fee_base, config.fee_token, config.workers) == (5, 2, 2)
    assert config.require_keys is True
    assert config.call_timeout_s > 0
    monkeypatch.delenv("PERMASTORE_FEE_TOKEN")
    assert HerderSettings.load(tmp_path / "none").fees.enabled is False


def test_config_rejects_bad_values(tmp_path, monkeypatch):
    monkeypatch.setenv("PERMASTORE_FEE_TOKEN", "lots")
    with pytest.raises(ValueError, match="fee_token"):
        HerderSettings.load(None)
    monkeypatch.delenv("PERMASTORE_FEE_TOKEN")
    (tmp_path / "herder.json").write_text('{"fee_bass": 5}')
    with pytest.raises(ValueError, match="unknown herder settings: fee_bass"):
        HerderSettings.load(tmp_path)
    with pytest.raises(ValueError):
        HerderSettings.of(workers=0)
    with pytest.raises(ValueError, match="trust_model_owners"):
        HerderSettings.of(trust_model_owners=("not an address",))
