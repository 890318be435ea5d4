"""Checked results: with --verify-fraction 1 every remote answer is run again elsewhere; a worker whose
engine differs (test-only: its seed is shifted) is caught, both Results are kept, a third run bans it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.remote_workers.conftest import worker_named

MAX_CALLS = 12


def _calls_until_banned(herd, address: str, at_once: int = 1) -> list[dict]:
    """Make calls (at_once of them together) until the worker at address is banned; return their records."""
    records = []
    with ThreadPoolExecutor(at_once) as pool:
        for n in range(0, MAX_CALLS, at_once):
            answers = list(pool.map(lambda k: herd.complete(f"check me {k}", max_tokens=12), range(n, n + at_once)))
            for answer in answers:
                assert answer.status_code == 200, answer.text
                records.append(answer.json()["record"])
            if address in herd.info()["banned_workers"]:
                return records
    herd.wait_for(lambda i: address in i["banned_workers"], "the skewed worker to be banned", timeout=60)
    return records


def test_a_worker_whose_engine_differs_is_caught_and_banned(herd):
    skewed, honest1, honest2 = herd.wallet("skewed"), herd.wallet("honest1"), herd.wallet("honest2")
    flags = [item for address in (skewed, honest1, honest2) for item in ("--allow-worker", address)]
    head = herd.start_head("--workers", "0", "--verify-fraction", "1", *flags)
    bad = herd.start_worker("skewed", mode="skewed")
    herd.start_worker("honest1")
    herd.start_worker("honest2")
    herd.wait_for(lambda i: len(i["remote_workers"]) == 3, "three workers asking for calls")
    _calls_until_banned(herd, skewed)
    info = herd.wait_for(lambda i: i["checks"]["pending"] == 0 and i["leases"]["live"] == 0, "checks to finish")
    assert info["banned_workers"] == [skewed]  # the honest ones agree with each other and stay
    assert info["checks"]["mismatches"] >= 1 and info["checks"]["decided"] >= 1
    assert info["checks"]["passed"] + info["checks"]["mismatches"] >= 1
    assert worker_named(info, skewed)["banned"] is True
    assert not worker_named(info, honest1)["banned"] and not worker_named(info, honest2)["banned"]
    # The mismatched call is marked, and both Results are kept on the head, signed by their workers.
    marked = info["mismatched_calls"][0]
    assert skewed in (marked["worker"], marked["checker"])
    kept = [httpx.get(f"{head.url}/{marked[key]}", timeout=30).json() for key in ("worker_result", "checker_result")]
    assert [result["message"] for result in kept] == [marked["message"]] * 2
    assert kept[0]["token_ids"] != kept[1]["token_ids"]
    # A banned worker gets no more leases; calls go on being answered by the others.
    assert herd.complete("after the ban", max_tokens=4).status_code == 200
    # The banned worker learns it at its next lease request (its current long poll may last 20 s).
    deadline = time.monotonic() + 60
    while "banned" not in bad.log() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "banned" in bad.log()


def test_checks_run_on_the_heads_own_slots_when_it_has_them(herd):
    skewed = herd.wallet("skewed")
    herd.start_head("--workers", "1", "--verify-fraction", "1", "--allow-worker", skewed)
    herd.start_worker("skewed", mode="skewed")
    herd.wait_for(lambda i: len(i["remote_workers"]) == 1, "the worker asking for calls")
    # Two calls at a time: one at a time, the head's own idle slot may take every call and the
    # remote worker would never answer one to be checked.
    _calls_until_banned(herd, skewed, at_once=2)
    info = herd.info()
    assert info["banned_workers"] == [skewed]
    marked = info["mismatched_calls"][0]
    assert marked["checker"] == "local" and marked["checker_result"] is None
