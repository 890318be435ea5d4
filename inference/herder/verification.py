"""Checked results: a sample of remote workers' calls run again elsewhere and compared token for token.

A call answered by a remote worker is checked with probability `fraction`: the same call
(same records: prompt, settings, seed) runs again on a local slot when the head has any,
else on another remote worker. Equal token IDs and text: passed. Different: the call is
marked (both Results are kept: the worker's signed ones are stored, a local run's token
hash is in the table) and a third run, on a party that ran neither, decides: every remote
worker whose output differs from it is banned (no more leases, kept across restarts).

The caller is answered before the check runs: a check catches a lying or broken worker
and stops it, it does not hold answers back.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.execution import execute_job
from inference.generation import Generation
from inference.sqlite_file import SqliteFile

log = logging.getLogger("inference.herder")

LOCAL = "local"  # the checker name of the head's own worker slots
MAX_PENDING = 1000  # checks waiting for a worker; more are dropped (counted as skipped)
RECENT = 20  # mismatched calls listed in /herder/info
SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    message_id TEXT NOT NULL,
    primary_worker TEXT NOT NULL,
    primary_result TEXT NOT NULL,
    primary_token_hash TEXT NOT NULL,
    checker TEXT NOT NULL,
    checker_result TEXT,              -- NULL for a local run (no record is signed for it)
    checker_token_hash TEXT NOT NULL,
    verdict TEXT NOT NULL,            -- 'match', 'mismatch' (the call is marked), 'decided'
    checked_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS banned_workers (
    address TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,         -- the call whose third run showed the worker wrong
    banned_at REAL NOT NULL
);
"""


class CheckLedger(SqliteFile):
    """The checks this head ran and the workers it banned (data/verification.sqlite). Thread-safe."""

    FILE_NAME = "verification.sqlite"
    SCHEMA = SCHEMA

    def record(self, message_id: str, first: Run, second: Run, verdict: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (message_id, first.worker, first.result_id or "", first.token_hash, second.worker,
                              second.result_id, second.token_hash, verdict, time.time()))

    def ban(self, address: str, message_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO banned_workers VALUES (?, ?, ?)", (address, message_id, time.time()))

    def banned(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT address FROM banned_workers")}

    def mismatched(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, primary_worker, primary_result, checker, checker_result FROM checks "
                "WHERE verdict = 'mismatch' ORDER BY checked_at DESC LIMIT ?", (limit,)).fetchall()
        return [{"message": m, "worker": w, "worker_result": r, "checker": c, "checker_result": cr}
                for m, w, r, c, cr in rows]


@dataclass(frozen=True)
class Run:
    """One run of a checked call: who ran it, its signed Result (None for a local run), its output."""

    worker: str
    result_id: str | None
    token_ids: tuple[int, ...]
    text: str

    @property
    def token_hash(self) -> str:
        return Generation("", self.token_ids, 0, "", "", {}).token_hash

    def same_output(self, other: Run) -> bool:
        return self.token_ids == other.token_ids and self.text == other.text


@dataclass(eq=False)
class Check:
    """A call being checked: the call (PreparedCall JSON, seed set), its runs so far, who may not run it next."""

    id: int
    call: dict[str, Any]
    runs: list[Run]
    exclude: set[str] = field(default_factory=set)

    @property
    def message_id(self) -> str:
        return self.call["message_id"]


class Checker:
    """Given the remote herd (its pool, for local runs) and the fraction to check, check sampled calls."""

    def __init__(self, herd, fraction: float, data_dir: Path | str, rng: random.Random | None = None):
        self.herd = herd
        self.fraction = fraction
        self.ledger = CheckLedger.open(data_dir)
        self._banned = self.ledger.banned()
        self._pending: list[Check] = []
        self._ids = itertools.count(1)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.counts = {"sampled": 0, "passed": 0, "mismatches": 0, "decided": 0, "skipped": 0}

    def is_banned(self, address: str) -> bool:
        with self._lock:
            return address in self._banned

    def maybe_check(self, call: dict[str, Any], worker: str, result_id: str, generation: Generation) -> None:
        """A remote worker answered a call: with probability `fraction`, check it."""
        if self.fraction <= 0 or self._rng.random() >= self.fraction:
            return
        first = Run(worker, result_id, tuple(generation.token_ids), generation.text)
        check = Check(next(self._ids), call, [first], {worker})
        with self._lock:
            self.counts["sampled"] += 1
        self._next_run(check)

    def _next_run(self, check: Check) -> None:
        """Run the check's next stage locally when the head has slots (trusted), else queue it for a remote worker.

        The third run may be local after a local second run: the head's slots are the reference.
        """
        if self.herd.local_workers > 0 and (LOCAL not in check.exclude or len(check.runs) == 2):
            check.exclude.add(LOCAL)
            self.herd.pool.submit(execute_job, dict(check.call),
                                  listener=lambda kind, value: self._local_done(check, kind, value))
            return
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self.counts["skipped"] += 1
                return
            self._pending.append(check)

    def take_for(self, worker: str) -> Check | None:
        """Return a pending check this worker may run (it ran none of the call's runs), or None."""
        with self._lock:
            for index, check in enumerate(self._pending):
                if worker not in check.exclude:
                    del self._pending[index]
                    check.exclude.add(worker)
                    return check
        return None

    def requeue(self, check: Check, worker: str) -> None:
        """A remote worker lost a check's lease: let another one run it."""
        check.exclude.discard(worker)
        with self._lock:
            self._pending.append(check)

    def _local_done(self, check: Check, kind: str, value: Any) -> None:
        if kind == "event":
            return
        if kind != "done":
            log.warning("local check run of %s failed: %s", check.message_id, value)
            with self._lock:
                self.counts["skipped"] += 1
            return
        generation = Generation.from_json(value)
        self._add_run(check, Run(LOCAL, None, tuple(generation.token_ids), generation.text))

    def remote_done(self, check: Check, worker: str, result_id: str, generation: Generation) -> None:
        """A remote worker answered a check lease (its signed Result is already stored)."""
        self._add_run(check, Run(worker, result_id, tuple(generation.token_ids), generation.text))

    def _add_run(self, check: Check, run: Run) -> None:
        check.runs.append(run)
        first = check.runs[0]
        if len(check.runs) == 2:
            verdict = "match" if first.same_output(run) else "mismatch"
            self.ledger.record(check.message_id, first, run, verdict)
            with self._lock:
                self.counts["passed" if verdict == "match" else "mismatches"] += 1
            if verdict == "mismatch":
                log.error("check of call %s: worker %s and %s differ; running it a third time",
                          check.message_id, first.worker, run.worker)
                self._next_run(check)
            return
        self._decide(check, run)

    def _decide(self, check: Check, third: Run) -> None:
        """Given the third run, ban every remote worker whose output differs from it."""
        self.ledger.record(check.message_id, check.runs[0], third, "decided")
        with self._lock:
            self.counts["decided"] += 1
        for earlier in check.runs[:2]:
            if earlier.worker != LOCAL and not earlier.same_output(third):
                log.error("worker %s banned: its output for call %s differs from a third run",
                          earlier.worker, check.message_id)
                self.ledger.ban(earlier.worker, check.message_id)
                with self._lock:
                    self._banned.add(earlier.worker)

    def info(self) -> dict[str, Any]:
        """Return the checks part of `GET /herder/info`."""
        with self._lock:
            counts, pending, banned = dict(self.counts), len(self._pending), sorted(self._banned)
        return {"verify_fraction": self.fraction, "checks": {**counts, "pending": pending},
                "mismatched_calls": self.ledger.mismatched(RECENT), "banned_workers": banned}

    def close(self) -> None:
        self.ledger.close()
