"""The paid-call service: prices a planned call, reserves its fee, records it, runs it in the pool, settles it.

    service = CallService.open(inference, data_dir, settings)   # pool started, workers warming
    running = service.start(plan, caller, payment)   # fee reserved, job queued, Message signed
    async for piece in running.stream(): ...          # or running.text_pieces()
    result = await running.result()                   # or running.finish(): CallResult, or HerderError

A call is settled by the service whatever the caller does (a client that leaves early still
gets its Result written and its fee charged or refunded), on the service's own settling
threads: no thread per call, and no server thread waits while a call runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from inference.context import Inference
from inference.credits import MAX_AMOUNT, CreditLedger, InsufficientCredit, Reservation
from inference.errors import (
    HerderError,
    InferenceError,
    InvalidPayment,
    PaymentRequired,
)
from inference.execution import execute_job, load_engine_job, prepare_worker
from inference.fees import FEE_BUMP, FeeError, multiplier_of, needed_fee, quote
from inference.generation import Generation
from inference.herder.pool import WorkerPool
from inference.herder.remote import RemoteHerd
from inference.keys import KeyStore
from inference.messages import MessageWrite
from inference.processes import (
    CallPlan,
    CallResult,
    PreparedCall,
    Process,
    default_settings,
    unsigned_call,
)
from inference.records import SignedRequest
from inference.settings import HerderSettings

log = logging.getLogger("inference.herder")

SETTLERS = 4  # threads that write Results and settle fees (each call takes milliseconds of one)


class PieceStream:
    """Text pieces of one call, readable from threads and from asyncio, each reader from the start."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._ended = False
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def add(self, piece: str) -> None:
        self._publish(piece)

    def end(self) -> None:
        self._publish(None)

    def _publish(self, piece: str | None) -> None:
        with self._cond:
            if piece is None:
                self._ended = True
            else:
                self._pieces.append(piece)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that reader's loop has closed

    def __iter__(self) -> Iterator[str]:
        index = 0
        while True:
            with self._cond:
                while index >= len(self._pieces) and not self._ended:
                    self._cond.wait()
                new, ended = self._pieces[index:], self._ended
            index += len(new)
            yield from new
            if ended and index >= len(self._pieces):
                return

    async def __aiter__(self) -> AsyncIterator[str]:
        index = 0
        loop = asyncio.get_running_loop()
        while True:
            event = asyncio.Event()
            with self._cond:
                new, ended = self._pieces[index:], self._ended
                if not new and not ended:
                    self._waiters.append((loop, event))
            if not new and not ended:
                await event.wait()
                continue
            index += len(new)
            for piece in new:
                yield piece
            if ended and not self._pieces[index:]:
                return


class RunningCall:
    """A call accepted by the service: its Message is being written, its fee reserved, its job queued."""

    def __init__(self, service: CallService, process: Process, fee: int, reservation: Reservation | None):
        self.service = service
        self.process = process
        self.fee = fee
        self.reservation = reservation
        self.prepared: PreparedCall | None = None
        self.message: MessageWrite | None = None
        self.pieces = PieceStream()
        self.settled: Future[CallResult] = Future()
        self._final: tuple[str, Any] | None = None
        self._lock = threading.Lock()

    @property
    def message_id(self) -> str:
        return self.prepared.message_id if self.prepared else ""

    @property
    def nonce(self) -> int:
        return self.prepared.nonce if self.prepared else 0

    def on_outcome(self, kind: str, value: Any) -> None:
        """Listener on the pool's thread: relay text, and settle once the job has ended."""
        if kind == "event":
            self.pieces.add(value)
            return
        with self._lock:
            self._final = (kind, value)
            ready = self.prepared is not None
        if ready:
            self.service.settle_later(self)

    def message_started(self, prepared: PreparedCall, message: MessageWrite) -> None:
        """Record the signed Message; settle now if the job already ended."""
        with self._lock:
            self.prepared, self.message = prepared, message
            ready = self._final is not None
        if ready:
            self.service.settle_later(self)

    def settle(self) -> None:
        """On a settling thread: write the Result (or failure), charge or refund, then answer."""
        kind, value = self._final or ("error", HerderError("call ended without a result"))
        try:
            outcome: CallResult | InferenceError = self.service.settle(self, kind, value)
        except Exception as exc:
            log.exception("settling call %s failed", self.message_id)
            outcome = HerderError(f"call could not be settled: {exc}")
        self.pieces.end()
        if isinstance(outcome, InferenceError):
            self.settled.set_exception(outcome)
        else:
            self.settled.set_result(outcome)

    def text_pieces(self) -> Iterator[str]:
        """Yield output text as the worker produces it, until the call ends."""
        return iter(self.pieces)

    def stream(self) -> AsyncIterator[str]:
        """Async-yield output text as the worker produces it, until the call ends."""
        return self.pieces.__aiter__()

    def finish(self) -> CallResult:
        """Wait until the call is settled; return the CallResult or raise its HerderError."""
        return self.settled.result()

    async def result(self) -> CallResult:
        """Await the settled call, holding no thread meanwhile."""
        return await asyncio.wrap_future(self.settled)


class CallService:
    """The herder as the server uses it: the inference context, the worker pool, the credit ledger and API keys."""

    def __init__(self, inference: Inference, settings: HerderSettings, ledger: CreditLedger, keys: KeyStore):
        self.inference = inference
        self.settings = settings
        self.ledger = ledger
        self.keys = keys
        # Calls reserved by a previous run of this node never finished: give the credit back.
        refunded = self.ledger.refund_open_reservations()
        if refunded:
            log.warning("refunded %d calls left open by the previous run", refunded)
        self.pool = WorkerPool(settings.pool())
        self.pool.warm(prepare_worker, None)  # every worker imports llama.cpp before its first call
        self.remote = RemoteHerd(self, settings.allow_workers, settings.lease_ttl_s, settings.verify_fraction)
        self._settlers = ThreadPoolExecutor(max_workers=SETTLERS, thread_name_prefix="call-settler")
        self._default_processes: dict[tuple[str, str | None], str] = {}
        self._spawn_lock = threading.Lock()
        # A node with models starts its workers now (loading them); an empty one with its first call.
        self.preloaded = self._preload(settings.preload_models)
        if self.preloaded:
            self.pool.start()
        # Hashing the native libraries for the engine identity takes a moment: not on a caller's time.
        threading.Thread(target=inference.identity, name="engine-identity", daemon=True).start()

    def _preload(self, count: int) -> int:
        """Have every worker load the newest trusted models as it starts; verify them meanwhile.

        A model's first call then finds its weights loaded and checked; the engines are the
        ones a default process uses (same file, same settings), so no record is written.
        Returns how many models the workers will load.
        """
        preloaded = 0
        for entry in self.inference.models.list()[:count]:
            try:
                model = self.inference.models.get(entry.id)  # starts its verification
            except InferenceError as exc:
                log.warning("not preloading model %s: %s", entry.id, exc)
                continue
            self.pool.warm(load_engine_job, {"model_path": str(model.path),
                                             "settings": default_settings(model.metadata).to_json()})
            threading.Thread(target=self.inference.vocabularies.count_tokens, args=(model.path, "", False),
                             name="vocabulary-preload", daemon=True).start()
            preloaded += 1
        return preloaded

    @classmethod
    def open(cls, inference: Inference, data_dir: Path | str, settings: HerderSettings) -> CallService:
        """Given the node's inference context, data folder and settings, start the service (workers too)."""
        return cls(inference, settings, CreditLedger.open(data_dir), KeyStore.open(data_dir))

    def close(self) -> None:
        """Stop the workers (their calls are answered and settled), then close the ledger and key store."""
        self.remote.close()
        self.pool.close()
        self._settlers.shutdown(wait=True)
        self.ledger.close()
        self.keys.close()

    @property
    def node_address(self) -> str:
        """Return the node wallet's address (the caller of keyless local calls)."""
        return self.inference.node_address

    # -- processes

    def default_process(self, model_id: str, chat_template: str | None = None) -> str:
        """Given a model ID or name (and a template name, None: the model's), return this node's process for it.

        Spawned once per model and template per server run (default settings; no name: the
        model's own template, else the one its header calls for); every worker starts
        loading the model at once, while it is verified.
        """
        model_id = self.inference.models.model_id(model_id)  # a name re-pointed later gets its new model
        key = (model_id, chat_template)
        with self._spawn_lock:
            process_id = self._default_processes.get(key)
            if process_id is None:
                process_id = self.inference.processes.spawn(model_id, chat_template=chat_template)
                self._default_processes[key] = process_id
                process = self.inference.processes.get(process_id)
                chosen = process.record.chat_template_chosen
                if chosen and chosen["template"] is None:
                    log.warning("model %s: %s; chat calls need a chat_template", model_id, chosen["reason"])
                self.warm(process)
            return process_id

    def warm(self, process: Process) -> None:
        """Have every worker load this process's model now, not during some caller's call."""
        self.pool.warm(load_engine_job, {"model_path": str(process.model_path), "settings": dict(process.record.settings)})

    # -- pricing

    def needed(self, plan: CallPlan) -> int:
        """Given a planned call, return its needed fee in real model tokens."""
        return needed_fee(self.settings.fees, plan.prompt_tokens, plan.max_tokens)

    def quote_for(self, plan: CallPlan) -> int:
        """Given a planned call, return the payment quoted now."""
        return quote(self.needed(plan), self.pool.last_multiplier, len(self.pool.queue))

    def info(self) -> dict[str, Any]:
        """Return `GET /herder/info`: fees, last multiplier, queue length, workers."""
        return {
            "base_fee": self.settings.fee_base,
            "token_fee": self.settings.fee_token,
            "fee_bump": FEE_BUMP,
            **self.pool.info(),
            "pricing": self.settings.fees.enabled,
            **self.remote.info(),
        }

    # -- calls

    def start(self, plan: CallPlan, caller: str, payment: int | None = None,
              request: SignedRequest | None = None) -> RunningCall:
        """Given a planned call and its caller, reserve the fee, queue the job, sign and store the Message.

        payment None pays the current quote. Raises PaymentRequired (nothing written).
        `request`: the caller's signed item asking for the call, stored before the Message names it.
        """
        fee, multiplier, reservation = self.reserve_fee(self.needed(plan), caller, payment)
        process = self.inference.processes.get(plan.process_id)
        running = RunningCall(self, process, fee, reservation)
        # The worker starts on the prompt at once; the Message is signed meanwhile (its ID
        # seeds the sampler, sent as the job's late value) and stored durably while the
        # model runs; the Result waits for it.
        late: Future[str] = Future()
        try:
            queued = self.pool.submit(execute_job, unsigned_call(process, plan).to_json(), multiplier, late=late,
                                      listener=running.on_outcome)
        except BaseException:
            self.refund(reservation)
            raise
        try:
            prepared, message = self.inference.messages.start_message(plan, caller, fee, request)
        except BaseException as exc:
            late.set_exception(exc)  # the job fails; nothing was written
            self.refund(reservation)
            raise
        self.remote.message_signed(queued, prepared)  # before the late value: a remote lease waits for it
        late.set_result(prepared.message_id)
        running.message_started(prepared, message)
        return running

    def settle_later(self, running: RunningCall) -> None:
        self._settlers.submit(running.settle)

    def settle(self, running: RunningCall, kind: str, value: Any) -> CallResult | InferenceError:
        """Given a call whose job ended, record it and settle its fee; return the result or the error."""
        prepared, messages = running.prepared, self.inference.messages
        assert prepared is not None  # settled only once the Message is signed
        if kind == "done":
            try:
                running.process.verified.result()  # held back until the weights match their ID
                result = messages.write_result(prepared, Generation.from_json(value), running.message)
            except Exception as exc:  # noqa: BLE001 - an unrecorded or unverified answer is not given
                log.error("recording the result of %s failed: %s", prepared.message_id, exc)
                self._fail(running, str(exc))
                return exc if isinstance(exc, InferenceError) else HerderError(f"the result could not be recorded: {exc}")
            self.charge(running.reservation)
            return result
        error = value if isinstance(value, HerderError) else HerderError(str(value))
        self._fail(running, str(error))
        return error

    def _fail(self, running: RunningCall, reason: str) -> None:
        """Answer the Message with a failure Result (best effort) and refund the fee."""
        assert running.prepared is not None
        try:
            self.inference.messages.write_failure(running.prepared, reason, running.message)
        except Exception as exc:  # noqa: BLE001 - the refund below matters more than the failure record
            log.error("writing failure of %s failed: %s", running.prepared.message_id, exc)
        self.refund(running.reservation)

    def reserve_fee(self, needed: int, caller: str, payment: int | None) -> tuple[int, float, Reservation | None]:
        """Given a job's needed fee, the caller and its payment (None: the current quote), reserve the
        fee; return (fee, queue multiplier, reservation or None when free). Raises PaymentRequired or
        InvalidPayment, with nothing reserved."""
        quoted = quote(needed, self.pool.last_multiplier, len(self.pool.queue))
        fee = quoted if payment is None else payment
        if fee > MAX_AMOUNT:
            raise InvalidPayment(f"payment {fee} is beyond the ledger's limit {MAX_AMOUNT}; lower max_tokens or payment")
        try:
            multiplier = multiplier_of(fee, needed)
        except FeeError as exc:
            raise PaymentRequired(str(exc), needed=needed, quote=quoted) from None
        reservation = None
        if fee > 0:
            try:
                reservation = self.ledger.reserve(caller, fee)
            except InsufficientCredit as exc:
                raise PaymentRequired(str(exc), needed=fee, balance=exc.balance, quote=quoted) from None
        return fee, multiplier, reservation

    def charge(self, reservation: Reservation | None) -> None:
        """Settle a reservation as spent (no-op for free calls)."""
        if reservation is not None:
            self.ledger.charge(reservation)

    def refund(self, reservation: Reservation | None) -> None:
        """Give a reservation back (no-op for free calls)."""
        if reservation is not None:
            self.ledger.refund(reservation)

    def credit(self, address: str, amount: int) -> str | None:
        """Credit an address; return the Credit-Notice record ID."""
        return self.ledger.credit(address, amount, store=self.inference.store)
