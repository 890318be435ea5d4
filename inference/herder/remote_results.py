"""Results signed by remote workers: built by the worker, checked by the head, vouched for in the head's Result.

A worker answers a leased call with a Result record (the same record a local call gets)
signed by its own wallet. The head checks it against the call it leased (message,
process, nonce, seed, token hash, shapes), stores it, and writes the process owner's
Result with the same output; that Result's `timings` name the worker and its Result's ID
(`timings` is informative and never compared, so the record format is unchanged). Replay
of the worker's Result ID therefore works from the records alone: the owner's Result for
the message vouches for it (`vouched_worker_result`).
"""

from __future__ import annotations

from typing import Any

from inference import records
from inference.errors import RecordInvalid
from inference.generation import Generation
from inference.processes import PreparedCall
from permastore.protocol import ans104
from permastore.protocol.errors import ProtocolError

WORKER = "worker"  # timings key: the address of the worker that ran the call
WORKER_RESULT = "worker_result"  # timings key: the ID of the Result the worker signed


def result_record(call: PreparedCall, generation: Generation) -> records.ResultRecord:
    """Given a call (seed set) and its generation, return its Result record (as MessageLog.write_result builds it)."""
    return records.ResultRecord(
        message=call.message_id, process=call.process_id, nonce=call.nonce, seed=call.sampling["seed"],
        text=generation.text, token_ids=list(generation.token_ids), token_hash=generation.token_hash,
        prompt_tokens=generation.prompt_tokens, prompt_token_hash=generation.prompt_token_hash,
        completion_tokens=generation.completion_tokens, finish_reason=generation.finish_reason,
        timings=generation.timings,
    )


def generation_of(result: records.ResultRecord) -> Generation:
    """Given a Result record, return the generation it records."""
    return Generation(result.text, tuple(result.token_ids), result.prompt_tokens, result.prompt_token_hash,
                      result.finish_reason, dict(result.timings))


def parse_worker_result(item: bytes, worker: str, call: dict[str, Any]) -> tuple[str, records.ResultRecord]:
    """Given a Result item a worker sent, the worker's address and the leased call (PreparedCall JSON),
    return (item ID, record); raise RecordInvalid when it is not that worker's valid answer to that call."""
    try:
        header = ans104.verify_item(item)  # Security: signed by the worker's wallet, bytes unaltered
        _, data = ans104.parse_item(item)
    except ProtocolError as exc:
        raise RecordInvalid(f"the Result is not a valid signed ANS-104 item: {exc}") from None
    if header.owner_address != worker:
        raise RecordInvalid(f"the Result is signed by {header.owner_address}, not by the worker {worker}")
    record = records.parse_record(data, records.ResultRecord.type)
    tags: dict[str, str] = {}
    for tag in header.tags:
        tags.setdefault(tag.name.decode("utf-8", "replace"), tag.value.decode("utf-8", "replace"))
    for name, value in [("Type", record.type), *record.tags()]:
        if tags.get(name) != value:
            raise RecordInvalid(f"the Result's tag {name} disagrees with its data")
    wanted = (call["message_id"], call["process_id"], call["nonce"], call["sampling"]["seed"])
    if (record.message, record.process, record.nonce, record.seed) != wanted:
        raise RecordInvalid("the Result answers another call (message, process, nonce or seed differ)")
    if generation_of(record).token_hash != record.token_hash or record.completion_tokens != len(record.token_ids):
        raise RecordInvalid("the Result's token hash or count does not match its token IDs")
    return header.id, record


def vouched_worker_result(ctx, message_id: str, owner: str, stored: records.StoredRecord[records.ResultRecord]
                          ) -> records.StoredRecord[records.ResultRecord]:
    """Given a Result not signed by the process owner, return it when the owner's Result for the
    message names it as the worker's (same tokens); raise RecordInvalid otherwise."""
    owners = ctx.records.find_result_for(message_id, owner)
    if owners is not None:
        vouching = ctx.records.load(owners, records.ResultRecord.type).record
        if (vouching.timings.get(WORKER_RESULT) == stored.id and vouching.timings.get(WORKER) == stored.owner_address
                and vouching.token_hash == stored.record.token_hash):
            return stored
    raise RecordInvalid(f"Result {stored.id} is signed by {stored.owner_address}, not the process owner, "
                        "and no Result of the owner names it as its worker's")
