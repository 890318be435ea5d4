"""Messages and Results: nonces, the hash chain, signed records stored in order.

    call, write = log.start_message(plan, caller, fee)   # nonce, chain, signed Message (stored on a thread)
    result = log.write_result(call, generation, write)    # signed Result, stored once the Message is durable
    log.write_failure(call, reason, write)               # a call that could not run gets an "error" Result

Nonces and chain values come from the durable Messages this node signed for the process
(its wallet writes them), cached and checked against the newest one stored, so a restart
or another OS process writing into the same data folder never repeats a nonce.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from inference import records
from inference.errors import InvalidRequest
from inference.generation import Generation, token_hash
from inference.processes import (
    CallPlan,
    CallResult,
    PreparedCall,
    ProcessBook,
    call_for,
)
from inference.records import RecordStore
from permastore.protocol import b64url

ERROR_FINISH = "error"
MAX_CALLER_BYTES = 256  # it is a tag value too (ANS-104 allows 3072)
CHAIN_CACHE = 4096  # processes whose chain head is kept; others are read back from the store


class MessageWrite:
    """A signed Message being stored on the record writer thread.

    `wait()` returns once the Message is durable (or raises why it could not be stored).
    A call's Result is stored only after its Message, and the caller is answered only
    after both, so overlapping the write with the model weakens no durability.
    """

    def __init__(self, message_id: str, future: Future[str] | None = None):
        self.message_id = message_id
        self._future = future

    def done(self) -> bool:
        return self._future is None or self._future.done()

    def wait(self) -> str:
        if self._future is not None:
            self._future.result()
        return self.message_id


@dataclass
class _Chain:
    """One process's chain head as this node last wrote or read it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    nonce: int = 0
    value: bytes = b""
    message_id: str | None = None
    newest_stored: str | None = None  # ID of the newest stored Message this head was checked against
    pending: MessageWrite | None = None  # our newest Message, maybe still being stored


def check_caller(caller: object, fee: object) -> None:
    """Raise InvalidRequest unless caller is a short non-empty string and fee an integer >= 0."""
    if not isinstance(caller, str) or not caller or len(caller.encode("utf-8")) > MAX_CALLER_BYTES:
        raise InvalidRequest(f"caller must be a non-empty string of at most {MAX_CALLER_BYTES} bytes")
    if not isinstance(fee, int) or isinstance(fee, bool) or fee < 0:
        raise InvalidRequest(f"fee must be an integer >= 0, got {fee!r}")


class MessageLog:
    """The Message and Result records of one store, written in nonce order by one writer thread."""

    def __init__(self, records_: RecordStore, processes: ProcessBook):
        self.records = records_
        self.processes = processes
        self._chains: OrderedDict[str, _Chain] = OrderedDict()
        self._lock = threading.Lock()
        # One writer thread: Messages are stored in the order their nonces were given, so a
        # failed write fails every later pending Message of the process too (they name it).
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-writer")

    def close(self) -> None:
        """Finish the pending writes and stop the writer thread."""
        self._writer.shutdown(wait=True)

    # -- chain heads

    def _chain(self, process_id: str) -> _Chain:
        with self._lock:
            chain = self._chains.get(process_id)
            if chain is None:
                chain = self._chains[process_id] = _Chain()
            self._chains.move_to_end(process_id)
            if len(self._chains) > CHAIN_CACHE:
                self._evict_idle()
            return chain

    def _evict_idle(self) -> None:
        for process_id in list(self._chains)[: len(self._chains) - CHAIN_CACHE]:
            chain = self._chains[process_id]
            if not chain.lock.locked() and (chain.pending is None or chain.pending.done()):
                del self._chains[process_id]

    def _read_head(self, process_id: str, chain: _Chain) -> None:
        """Bring the head up to the durable Messages this node signed (cached while none was added)."""
        writer = self.records.node_address
        newest = self.records.newest_message_id(process_id, writer)
        if chain.value and chain.newest_stored == newest:
            return
        nonce, value, message_id = 0, records.initial_chain(process_id), None
        for candidate in self.records.message_ids_of(process_id, owner=writer):
            stored = self.records.load(candidate, records.MessageRecord.type)
            if stored.owner_address != writer:
                continue  # the query filters by owner; this keeps the rule where it is relied on
            if stored.record.nonce > nonce:
                nonce, value, message_id = stored.record.nonce, b64url.decode(stored.record.hash_chain), candidate
        chain.nonce, chain.value, chain.message_id, chain.newest_stored = nonce, value, message_id, newest

    # -- messages

    def start_message(self, plan: CallPlan, caller: str, fee: int = 0,
                      request: records.SignedRequest | None = None) -> tuple[PreparedCall, MessageWrite]:
        """Given a planned call, its caller and fee, sign its Message and start storing it; return both.

        The call can run at once (its seed comes from the signed Message's ID); pass the
        MessageWrite to `write_result` / `write_failure`, which wait for it. `request`, the
        caller's own signed item asking for the call (an AO message), is named by the
        Message and stored before it.
        """
        check_caller(caller, fee)
        process = self.processes.get(plan.process_id)
        chain = self._chain(process.id)
        with chain.lock:
            pending = chain.pending
            if pending is None or pending.done():
                self._read_head(process.id, chain)  # else the head is ours, still being stored
            draft = records.MessageRecord(
                process=process.id, caller=caller, nonce=chain.nonce + 1, input=plan.input,
                rendered_prompt=plan.rendered_prompt, parse_special=plan.parse_special,
                sampling=plan.sampling.to_json(), fee=fee, previous=chain.message_id, hash_chain="",
                request=request.id if request is not None else None,
            )
            value = records.next_chain(chain.value, draft.content_hash())
            message = records.MessageRecord(**{**asdict(draft), "hash_chain": b64url.encode(value)})
            signed = self.records.sign(message)
            write = MessageWrite(signed.id, self._writer.submit(self._store_after, signed, pending, request))
            # If this write fails, the store's newest Message differs from this ID and the next
            # call reads the store again instead of trusting the head.
            chain.nonce, chain.value, chain.message_id, chain.newest_stored = message.nonce, value, signed.id, signed.id
            chain.pending = write
        return call_for(process, signed.id, message), write

    def _store_after(self, signed: records.SignedRecord, previous: MessageWrite | None,
                     request: records.SignedRequest | None = None) -> str:
        if previous is not None:
            previous.wait()  # a Message must not be stored after the one it names failed
        if request is not None and self.records.store.info(request.id) is None:
            self.records.store.put_item(request.item)  # verified again by the store; the Message names it
        return self.records.put(signed)

    def prepare_message(self, plan: CallPlan, caller: str, fee: int = 0) -> PreparedCall:
        """Given a planned call, its caller and the fee paid, write the Message record and return the call."""
        call, write = self.start_message(plan, caller, fee)
        write.wait()
        return call

    # -- results

    def write_result(self, call: PreparedCall, generation: Generation | dict,
                     message: MessageWrite | None = None) -> CallResult:
        """Given a call and its generation (or Generation.to_json of it), write the Result record.

        With `message` (from start_message) the Result is signed first, then stored once the
        Message is durable; if the Message could not be stored, its error is raised and no
        Result is written (it would answer a message that does not exist).
        """
        if isinstance(generation, dict):
            generation = Generation.from_json(generation)
        seed = call.sampling["seed"]
        record = records.ResultRecord(
            message=call.message_id, process=call.process_id, nonce=call.nonce, seed=seed,
            text=generation.text, token_ids=list(generation.token_ids), token_hash=generation.token_hash,
            prompt_tokens=generation.prompt_tokens, prompt_token_hash=generation.prompt_token_hash,
            completion_tokens=generation.completion_tokens, finish_reason=generation.finish_reason,
            timings=generation.timings,
        )
        result_id = self._store_answer(record, message)
        return CallResult(call.process_id, call.message_id, result_id, generation.text, generation.token_ids,
                          generation.prompt_tokens, generation.finish_reason, seed, generation.timings)

    def write_failure(self, call: PreparedCall, reason: str, message: MessageWrite | None = None) -> str:
        """Given a call that could not run, write a Result with finish_reason "error"; return its ID."""
        record = records.ResultRecord(
            message=call.message_id, process=call.process_id, nonce=call.nonce, seed=call.sampling["seed"],
            text="", token_ids=[], token_hash=token_hash([]), prompt_tokens=0, prompt_token_hash="",
            completion_tokens=0, finish_reason=ERROR_FINISH, timings={"error": str(reason)[:500]},
        )
        return self._store_answer(record, message)

    def _store_answer(self, record: records.ResultRecord, message: MessageWrite | None) -> str:
        """Sign a Result, wait until its Message is durable, then store the Result; return its ID."""
        signed = self.records.sign(record)
        if message is not None:
            message.wait()
        return self.records.put(signed)
