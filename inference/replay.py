"""Replay: rebuild a recorded call from its records alone, run it again, compare token for token.

Before anything runs, the records are checked against each other: owners agree, the
Result's token hash matches its token IDs, the seed follows the seed policy, the
message's hash chain links to the one before it. A record that fails is reported as
RecordInvalid (tampered / inconsistent) or RecordNotFound (missing), never replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference import records
from inference.ao.binding import record_for_item
from inference.context import Inference
from inference.engine import EngineCache
from inference.errors import RecordInvalid, RecordNotFound
from inference.execution import engines_of, execute
from inference.generation import token_hash
from inference.herder.pool import WorkerPool
from inference.herder.remote_results import vouched_worker_result
from inference.herder.worker import JobContext
from inference.identity import identity_differences
from inference.messages import ERROR_FINISH
from inference.processes import PreparedCall, Process, call_for, raw_prompt
from inference.sampling import EngineSettings
from permastore.protocol import b64url


@dataclass
class ReplayReport:
    """One call replayed: identical, or where the token streams first differ."""

    process_id: str
    message_id: str
    result_id: str
    nonce: int
    identical: bool
    recorded_tokens: int
    replayed_tokens: int
    first_difference: int | None = None  # token index
    recorded_token: int | None = None  # None: the recorded output ended there
    replayed_token: int | None = None
    recorded_piece: str | None = None
    replayed_piece: str | None = None
    skipped: str | None = None  # why the call was not run (the original call failed)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Return one line saying what the replay found."""
        if self.skipped:
            return f"message {self.message_id} (nonce {self.nonce}): skipped, {self.skipped}"
        if self.identical:
            return f"identical: message {self.message_id} (nonce {self.nonce}), {self.recorded_tokens} tokens"
        if self.first_difference is None:
            return f"differs: message {self.message_id}: same tokens, but the recorded text does not match them"
        return (
            f"differs: message {self.message_id} (nonce {self.nonce}) at token {self.first_difference}: "
            f"recorded {_describe(self.recorded_token, self.recorded_piece)}, "
            f"replayed {_describe(self.replayed_token, self.replayed_piece)}"
        )


@dataclass
class ProcessReplayReport:
    process_id: str
    calls: list[ReplayReport]

    @property
    def identical(self) -> bool:
        return all(call.identical or call.skipped for call in self.calls)


def _describe(token: int | None, piece: str | None) -> str:
    if token is None:
        return "end of output"
    return f"token {token} {piece!r}"


# ---------------------------------------------------------------------------- record checks


def _load_owned_message(ctx: Inference, record_id: str, owner: str | None) -> records.StoredRecord[records.MessageRecord]:
    """Load a Message record; when owner is given it must have signed it."""
    kind = records.MessageRecord.type
    stored = ctx.records.load(record_id, kind)
    if owner is not None and stored.owner_address != owner:
        raise RecordInvalid(f"{kind} {record_id} is signed by {stored.owner_address}, not the process owner {owner}")
    return stored


def _result_for(ctx: Inference, message_id: str, owner: str) -> records.StoredRecord[records.ResultRecord]:
    """Return the process owner's Result for a message; raise RecordNotFound when there is none."""
    result_id = ctx.records.find_result_for(message_id, owner)
    if result_id is None:
        raise RecordNotFound(f"no Result record for message {message_id}")
    return ctx.records.load(result_id, records.ResultRecord.type)


def check_result(message_id: str, message: records.MessageRecord,
                 stored: records.StoredRecord[records.ResultRecord]) -> None:
    """Raise RecordInvalid unless the Result is consistent with itself and its Message."""
    result = stored.record
    if result.message != message_id or result.process != message.process or result.nonce != message.nonce:
        raise RecordInvalid(f"Result {stored.id} does not belong to message {message_id}")
    if result.finish_reason == ERROR_FINISH:
        return
    if token_hash(result.token_ids) != result.token_hash:
        raise RecordInvalid(f"Result {stored.id} is tampered: its token hash does not match its token IDs")
    if result.completion_tokens != len(result.token_ids):
        raise RecordInvalid(f"Result {stored.id} is tampered: completion_tokens != number of token IDs")
    wanted_seed = message.sampling.get("seed")
    if wanted_seed is None:
        wanted_seed = records.seed_from_message_id(message_id)
    if result.seed != wanted_seed:
        raise RecordInvalid(f"Result {stored.id} used seed {result.seed}, the message calls for {wanted_seed}")


def check_chain(process_id: str, messages: list[tuple[str, records.MessageRecord]]) -> None:
    """Given a process's messages (any order), raise unless nonces run 1..n, each names the one
    before it, and every chain value links."""
    ordered = sorted(messages, key=lambda pair: pair[1].nonce)
    previous, previous_id = records.initial_chain(process_id), None
    for expected_nonce, (message_id, message) in enumerate(ordered, start=1):
        if message.nonce != expected_nonce:
            if message.nonce < 1:
                raise RecordInvalid(f"message {message_id} has nonce {message.nonce}; nonces start at 1")
            if message.nonce < expected_nonce:
                raise RecordInvalid(f"process {process_id}: two messages with nonce {message.nonce}")
            raise RecordNotFound(f"process {process_id}: message with nonce {expected_nonce} is missing")
        if message.previous != previous_id:
            raise RecordInvalid(f"process {process_id}: message {message_id} names {message.previous} "
                                f"as its predecessor, not {previous_id}")
        chain = records.next_chain(previous, message.content_hash())
        if b64url.encode(chain) != message.hash_chain:
            raise RecordInvalid(f"process {process_id}: hash chain broken at message {message_id} (nonce {message.nonce})")
        previous, previous_id = chain, message_id


def _link_single(ctx: Inference, process: Process, message_id: str, message: records.MessageRecord) -> None:
    """Check one message's chain value against its predecessor's (or the process's initial value).

    The predecessor is found by the ID the message names, so this works on a node that
    holds (or can fetch) just the records of this one call and the message before it.
    """
    if message.nonce < 1:
        raise RecordInvalid(f"message {message_id} has nonce {message.nonce}; nonces start at 1")
    previous = records.initial_chain(process.id)
    if message.nonce == 1:
        if message.previous is not None:
            raise RecordInvalid(f"message {message_id} has nonce 1 but names a predecessor")
    else:
        if message.previous is None:
            raise RecordInvalid(f"message {message_id} has nonce {message.nonce} but names no predecessor")
        try:
            before = _load_owned_message(ctx, message.previous, process.owner_address)
        except RecordNotFound:
            raise RecordNotFound(f"process {process.id}: message with nonce {message.nonce - 1} "
                                 f"({message.previous}) is missing") from None
        if before.record.process != process.id or before.record.nonce != message.nonce - 1:
            raise RecordInvalid(f"message {message_id}: its predecessor {message.previous} is not nonce "
                                f"{message.nonce - 1} of process {process.id}")
        previous = b64url.decode(before.record.hash_chain)
    if b64url.encode(records.next_chain(previous, message.content_hash())) != message.hash_chain:
        raise RecordInvalid(f"message {message_id}: hash chain does not link to the previous message")


def _render_notes(ctx: Inference, process: Process, message: records.MessageRecord) -> list[str]:
    """Re-render the prompt from the message input; return notes (raw prompts must match exactly)."""
    if "prompt" in message.input:
        if raw_prompt(process.record.system_prompt, message.input["prompt"]) != message.rendered_prompt:
            raise RecordInvalid("message's rendered prompt does not match its prompt and the process's system prompt")
        return []
    if process.template is None:
        raise RecordInvalid("message has chat messages but its process has no chat template")
    if ctx.processes.render(process, message.input.get("messages", [])) != message.rendered_prompt:
        # Templates may print today's date (strftime_now), so this is a note, not a failure.
        return ["re-rendering the chat messages gives a different prompt; replaying the recorded prompt"]
    return []


# ---------------------------------------------------------------------------- replay


def resolve_call(ctx: Inference, record_id: str
                 ) -> tuple[Process, str, records.MessageRecord, records.StoredRecord[records.ResultRecord]]:
    """Given a message or result ID, return (process, message_id, message, result StoredRecord).

    Checked on the way: owners agree, the message links to its predecessor in the hash
    chain, the Result is consistent with itself and with the message. An AO message's own
    ID stands for the Message record bound to it.
    """
    record_id = record_for_item(ctx.records, record_id) or record_id
    stored = ctx.records.load(record_id)
    if isinstance(stored.record, records.ProcessRecord):
        raise RecordInvalid(f"{record_id} is a Process record; replay a message or result, or use --process")
    # Rebuilt around the narrowed record, so the type checker knows which record each one holds.
    if isinstance(stored.record, records.ResultRecord):
        message_id = stored.record.message
        message_stored = ctx.records.load(message_id, records.MessageRecord.type)
        result_stored: records.StoredRecord[records.ResultRecord] | None = records.StoredRecord(
            stored.id, stored.owner_address, stored.record)
    else:
        message_id, result_stored = record_id, None
        message_stored = records.StoredRecord(stored.id, stored.owner_address, stored.record)
    message = message_stored.record
    process = ctx.processes.get(message.process)
    owner = process.owner_address
    if message_stored.owner_address != owner:
        raise RecordInvalid(f"Message {message_id} is signed by {message_stored.owner_address}, not the process owner")
    _link_single(ctx, process, message_id, message)
    if result_stored is None:
        result_stored = _result_for(ctx, message_id, owner)
    elif result_stored.owner_address != owner:
        # A remote worker's Result replays when the owner's Result for the message names it.
        result_stored = vouched_worker_result(ctx, message_id, owner, result_stored)
    check_result(message_id, message, result_stored)
    return process, message_id, message, result_stored


# A runner: given a call to execute and the recorded token IDs, return (generation as
# Generation.to_json, {token ID: its text} for the tokens at the first difference).
Runner = Callable[[PreparedCall, list[int]], tuple[dict[str, Any], dict[int, str | None]]]


def first_difference(recorded: list[int], replayed: list[int]) -> int | None:
    """Given two token ID lists, return the first index where they differ (None: identical)."""
    for index in range(max(len(recorded), len(replayed))):
        a = recorded[index] if index < len(recorded) else None
        b = replayed[index] if index < len(replayed) else None
        if a != b:
            return index
    return None


def run_with(engines: EngineCache, call: PreparedCall, recorded: list[int]) -> tuple[dict[str, Any], dict[int, str | None]]:
    """Run a call on engines of this OS process; return its generation and the pieces at the first difference."""
    engine = engines.get(call.model_path, EngineSettings.from_json(call.settings))
    generation = execute(call, engines)
    replayed = list(generation.token_ids)
    pieces: dict[int, str | None] = {}
    index = first_difference(recorded, replayed)
    if index is not None:
        for tokens in (recorded, replayed):
            if index < len(tokens):
                pieces[tokens[index]] = engine.piece(tokens[index])
    return generation.to_json(), pieces


def run_here(ctx: Inference) -> Runner:
    """Return a runner in this OS process (the context's engines)."""
    return lambda call, recorded: run_with(ctx.engines, call, recorded)


def replay_job(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
    """Herder job: payload {"call": PreparedCall.to_json(), "recorded": [ids]}."""
    generation, pieces = run_with(engines_of(job), PreparedCall.from_json(payload["call"]), payload["recorded"])
    return {"generation": generation, "pieces": [[token, piece] for token, piece in pieces.items()]}


def herder_runner(pool: WorkerPool) -> Runner:
    """Given a started WorkerPool, return a runner that replays in its worker processes (queued like calls)."""
    def run(call: PreparedCall, recorded: list[int]) -> tuple[dict[str, Any], dict[int, str | None]]:
        answer = pool.run(replay_job, {"call": call.to_json(), "recorded": list(recorded)})
        return answer["generation"], {token: piece for token, piece in answer["pieces"]}
    return run


def _run(process: Process, message_id: str, message: records.MessageRecord,
         result_stored: records.StoredRecord[records.ResultRecord], notes: list[str], runner: Runner) -> ReplayReport:
    result = result_stored.record
    report = ReplayReport(process.id, message_id, result_stored.id, message.nonce, False,
                          len(result.token_ids), 0, notes=notes)
    if result.finish_reason == ERROR_FINISH:
        report.skipped = "the original call failed (" + str(result.timings.get("error", "no reason")) + ")"
        return report
    process.verified.result()  # the weights must be the ones the ID names
    recorded = list(result.token_ids)
    generation, pieces = runner(call_for(process, message_id, message), recorded)
    replayed = list(generation["token_ids"])
    report.replayed_tokens = len(replayed)
    if generation["prompt_token_hash"] != result.prompt_token_hash:
        report.notes.append("the prompt tokenized differently than recorded")
    index = first_difference(recorded, replayed)
    if index is not None:
        a = recorded[index] if index < len(recorded) else None
        b = replayed[index] if index < len(replayed) else None
        report.first_difference = index
        report.recorded_token, report.replayed_token = a, b
        report.recorded_piece = pieces.get(a) if a is not None else None
        report.replayed_piece = pieces.get(b) if b is not None else None
        return report
    report.identical = generation["text"] == result.text
    return report


def _tell_identity(ctx: Inference, process: Process, on_identity: Callable[[list[str]], None] | None) -> None:
    differences = identity_differences(process.record.engine, ctx.identity())
    if differences and on_identity:
        on_identity(differences)


def replay_call(ctx: Inference, record_id: str, on_identity: Callable[[list[str]], None] | None = None,
                runner: Runner | None = None) -> ReplayReport:
    """Given a message or result ID, check its records, replay it and return the report.

    on_identity is told the engine-identity differences (if any) before the model runs;
    runner (default run_here(ctx); herder_runner(pool) for a server) runs the model.
    """
    process, message_id, message, result_stored = resolve_call(ctx, record_id)
    notes = _render_notes(ctx, process, message)
    _tell_identity(ctx, process, on_identity)
    return _run(process, message_id, message, result_stored, notes, runner or run_here(ctx))


def replay_process(ctx: Inference, process_id: str, on_identity: Callable[[list[str]], None] | None = None,
                   on_call: Callable[[ReplayReport], None] | None = None) -> ProcessReplayReport:
    """Given a process ID, check its whole message chain, then replay every call in nonce order."""
    process = ctx.processes.get(process_id)
    owner = process.owner_address
    messages = []
    for message_id in ctx.records.message_ids_of(process_id, owner=owner):
        stored = ctx.records.load(message_id, records.MessageRecord.type)
        if stored.owner_address == owner:  # items by others tagged Process=... are not part of it
            messages.append((message_id, stored.record))
    check_chain(process_id, messages)
    messages.sort(key=lambda pair: pair[1].nonce)
    checked = []
    for message_id, message in messages:
        result_stored = _result_for(ctx, message_id, owner)
        check_result(message_id, message, result_stored)
        checked.append((message_id, message, result_stored, _render_notes(ctx, process, message)))
    _tell_identity(ctx, process, on_identity)
    reports = []
    for message_id, message, result_stored, notes in checked:
        report = _run(process, message_id, message, result_stored, notes, run_here(ctx))
        reports.append(report)
        if on_call:
            on_call(report)
    return ProcessReplayReport(process_id, reports)
