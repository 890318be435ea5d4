"""The CU's reads: a message's result from its records, pages of a process's results, dry-runs.

Everything here is read from the node's records (Message and Result, signed by the
scheduler) or computed without writing any: a dry-run runs the model in a herder worker
and answers, charging nothing and storing nothing.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Protocol

from inference import records
from inference.ao import binding
from inference.ao.protocol import (
    ACTION_INFO,
    CallOutcome,
    InferenceOptions,
    action_of,
    dry_run_of,
    error_object,
    inference_options,
    result_object,
)
from inference.errors import InferenceError, InvalidRequest, RecordNotFound
from inference.execution import execute_job
from inference.generation import Generation
from inference.herder.service import CallService
from inference.messages import ERROR_FINISH
from inference.processes import CallPlan, Process, unsigned_call
from permastore.protocol import b64url

DEFAULT_LIMIT = 25  # AO's CU default
MAX_LIMIT = 100  # a page reads two records per result
DRY_RUN_SLOTS = 2  # dry-runs are free and unsigned: at most this many at once, the rest 429
DRY_RUN_SEED = 0  # a dry-run has no Message ID to derive a seed from
INTERRUPTED = "the call was interrupted before it finished (the node stopped); its fee was refunded"


class ProcessHost(Protocol):
    """What a dry-run needs of the node's AO units (AoUnits is one): its records, names and call plans."""

    records: records.RecordStore
    module_id: str
    scheduler: str

    def plan(self, process: Process, options: InferenceOptions) -> CallPlan: ...


class DryRunBusy(InferenceError):
    """Too many dry-runs at once (AO's CU answers 429 too)."""

    status = 429


def outcome_of(ao_message: str, ao_process: str, message_id: str, message: records.MessageRecord,
               result_id: str, result: records.ResultRecord) -> CallOutcome:
    """Given an AO message's Message and Result records, return its evaluation."""
    error = None
    if result.finish_reason == ERROR_FINISH:
        error = str(result.timings.get("error") or "the call failed")
    return CallOutcome(ao_message, ao_process, message.caller, message.nonce, result.text, result.prompt_tokens,
                       result.completion_tokens, result.finish_reason, result.seed,
                       {"process": message.process, "message": message_id, "result": result_id}, error)


def stored_result(store_records: records.RecordStore, scheduler: str, process: Process, ao_process: str,
                  message_id: str) -> dict[str, Any]:
    """Given a process and an AO message ID, return its result object from the records; RecordNotFound."""
    if not isinstance(message_id, str) or not b64url.is_id(message_id):
        raise InvalidRequest(f"{message_id!r} is not a message ID (43 base64url characters)")
    record_id = binding.message_record_for(store_records, message_id, scheduler)
    if record_id is None:
        raise RecordNotFound(f"message {message_id} was not sent to process {ao_process} here")
    message = store_records.load(record_id, records.MessageRecord.type).record
    if message.process != process.id:
        raise RecordNotFound(f"message {message_id} was not sent to process {ao_process}")
    result_id = store_records.find_result_for(record_id, scheduler)
    if result_id is None:
        return error_object(INTERRUPTED)
    result = store_records.load(result_id, records.ResultRecord.type).record
    return result_object(outcome_of(message_id, ao_process, record_id, message, result_id, result))


# ---------------------------------------------------------------------------- results


def _cursor(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise InvalidRequest(f"{what} must be a cursor from an earlier page (a message nonce), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ResultWindow:
    """AO's paging arguments: continue after `after`, end at `until` (nonces), in `sort` order."""

    after: int | None
    until: int | None
    descending: bool
    limit: int

    @classmethod
    def of(cls, start: str | None, stop: str | None, sort: str | None, limit: str | None) -> ResultWindow:
        """Given the query's from, to, sort and limit, return the window; InvalidRequest."""
        if sort not in (None, "", "ASC", "DESC"):
            raise InvalidRequest(f"sort must be ASC or DESC, got {sort!r}")
        count = _cursor(limit, "limit")
        if count == 0:
            raise InvalidRequest("limit must be at least 1")
        return cls(_cursor(start, "from"), _cursor(stop, "to"), sort == "DESC",
                   min(count or DEFAULT_LIMIT, MAX_LIMIT))

    def nonces(self, head: int) -> range:
        """Given the newest nonce, return the nonces this page may cover, in order."""
        if self.descending:
            high = min(self.after - 1 if self.after is not None else head, head)
            return range(high, max(self.until or 1, 1) - 1, -1)
        return range((self.after or 0) + 1, min(self.until or head, head) + 1)


def _head(store_records: records.RecordStore, process: Process, scheduler: str) -> int:
    newest = store_records.newest_message_id(process.id, scheduler)
    return store_records.load(newest, records.MessageRecord.type).record.nonce if newest else 0


def _batch_results(store_records: records.RecordStore, scheduler: str, process: Process,
                   nonces: list[int]) -> dict[int, records.StoredRecord[records.ResultRecord]]:
    ids = store_records.query_ids([("Type", [records.ResultRecord.type]), ("Process", [process.id]),
                                   ("Nonce", [str(n) for n in nonces])], owners=[scheduler])
    found: dict[int, records.StoredRecord[records.ResultRecord]] = {}
    for result_id in ids:
        stored = store_records.load(result_id, records.ResultRecord.type)
        found.setdefault(stored.record.nonce, stored)
    return found


def results_page(store_records: records.RecordStore, scheduler: str, process: Process, ao_process: str,
                 window: ResultWindow) -> dict[str, Any]:
    """Given a process and a window, return AO's page {pageInfo, edges} of its evaluated messages.

    As AO's CU does, messages whose call failed are left out (their result says why), and
    so are those still running.
    """
    nonces = list(window.nonces(_head(store_records, process, scheduler)))
    edges: list[dict[str, Any]] = []
    for start in range(0, len(nonces), window.limit + 1):
        batch = nonces[start : start + window.limit + 1]
        found = _batch_results(store_records, scheduler, process, batch)
        for nonce in batch:
            stored = found.get(nonce)
            if stored is None or stored.record.finish_reason == ERROR_FINISH:
                continue
            message = store_records.load(stored.record.message, records.MessageRecord.type).record
            outcome = outcome_of(message.request or stored.record.message, ao_process, stored.record.message,
                                 message, stored.id, stored.record)
            edges.append({"cursor": str(nonce), "node": result_object(outcome)})
        if len(edges) > window.limit:
            break
    return {"pageInfo": {"hasNextPage": len(edges) > window.limit}, "edges": edges[: window.limit]}


# ---------------------------------------------------------------------------- dry-runs


def info_object(units: ProcessHost, process: Process, ao_process: str) -> dict[str, Any]:
    """Given a process, return a dry-run's answer to Action Info: what the process runs."""
    spawn = units.records.store.info(ao_process)
    record = process.record
    output = {
        "process": ao_process, "owner": spawn.owner_address if spawn else None, "record": process.id,
        "module": units.module_id, "scheduler": units.scheduler, "model": record.model,
        "chat_template": record.chat_template, "system_prompt": record.system_prompt, "settings": record.settings,
    }
    return {"Output": output, "Messages": [], "Spawns": [], "Assignments": [], "GasUsed": 0}


class DryRuns:
    """Dry-runs of one node: at most DRY_RUN_SLOTS at once, in the herder's workers, nothing written."""

    def __init__(self, service: CallService):
        self.service = service
        self._slots = threading.BoundedSemaphore(DRY_RUN_SLOTS)

    def run(self, units: ProcessHost, process: Process, ao_process: str, body: Any,
            local: bool) -> dict[str, Any] | Future:
        """Given a process, a dry-run message and whether its caller is on this machine, return its
        result object, or a Future of it."""
        dry = dry_run_of(body, ao_process)
        if action_of(dry.tags) == ACTION_INFO:
            return info_object(units, process, ao_process)
        options = inference_options(dry.tags, dry.data)
        refusal = self._refusal(units, process, options, local)
        if refusal is not None:
            return error_object(refusal)
        plan = units.plan(process, replace(options, sampling={"seed": DRY_RUN_SEED, **options.sampling}))
        if not self._slots.acquire(blocking=False):
            raise DryRunBusy("Rate limit exceeded: too many dry-runs at once; try again shortly")
        answer: Future[dict[str, Any]] = Future()
        outcome = CallOutcome(dry.id, ao_process, dry.owner, 0)

        def finish(kind: str, value: Any) -> None:
            if kind == "event":
                return
            self._slots.release()
            if kind != "done":
                answer.set_result(error_object(str(value)))
                return
            generation = Generation.from_json(value)
            done = replace(outcome, text=generation.text, prompt_tokens=generation.prompt_tokens,
                           completion_tokens=generation.completion_tokens,
                           finish_reason=generation.finish_reason, seed=plan.sampling.seed)
            # Nothing computed from the weights is answered before they match their ID.
            process.verified.add_done_callback(lambda checked: answer.set_result(
                error_object(f"the model failed its check: {checked.exception()}") if checked.exception()
                else result_object(done)))

        try:
            self.service.pool.submit(execute_job, unsigned_call(process, plan).to_json(), listener=finish)
        except BaseException:
            self._slots.release()
            raise
        return answer

    def _refusal(self, units: ProcessHost, process: Process, options: Any, local: bool) -> str | None:
        """Return why this node will not run a dry-run's model, None when it will.

        Security: a dry-run is unsigned (its Owner is a claim), so it can neither be charged
        nor tell who asks: it runs the model only where an unidentified call would, from this
        machine while calls are free and keys are not required.
        """
        settings = self.service.settings
        if settings.fees.enabled:
            quote = self.service.quote_for(units.plan(process, options))
            return (f"dry-runs do not run the model on this node: calls are charged (about {quote} credits now) "
                    "and a dry-run is unsigned; send it as a message instead")
        if settings.require_keys or not local:
            return ("dry-runs run the model only for callers on this node's machine (a dry-run is unsigned); "
                    "send it as a message instead")
        return None
