"""The composition root of inference: everything it keeps for one store, built once, closed with it.

    inference = Inference.open(store, source=read_through)        # the command line: operator trust
    inference = Inference.open(store, source, trusted_owners=[...], operator=False)   # the server
    pid = inference.processes.spawn(model_id, settings)
    result = inference.send(pid, "caller", prompt="...", sampling=SamplingParams(...))
    inference.close()

Caches (verified models, parsed headers, loaded processes, chain heads, vocabularies,
loaded engines) and threads (the record writer, the model verifier, the Message signer)
belong to these objects, never to modules, so two stores in one OS process share nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from inference.engine import EngineCache
from inference.execution import execute
from inference.fetching import SourceFetcher
from inference.identity import engine_identity
from inference.messages import MessageLog, check_caller
from inference.model_trust import ModelTrust
from inference.models import ModelCatalog
from inference.processes import CallPlan, CallResult, ProcessBook, unsigned_call
from inference.records import RecordStore
from inference.sampling import SamplingParams
from inference.store_types import InferenceStore, StoringSource
from inference.template_sandbox import TemplateSandbox
from inference.vocabulary import Vocabularies
from permastore.protocol.wallet import address_of


class Inference:
    """Given a store (and a storing source for what it lacks), the models, records, processes and
    messages of that store, and what runs calls in this OS process."""

    def __init__(self, store: InferenceStore, trust: ModelTrust, source: StoringSource | None = None):
        self.store = store
        self.trust = trust
        self._identity: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._signer: ThreadPoolExecutor | None = None
        self.fetcher = SourceFetcher(source)
        self.templates = TemplateSandbox()
        self.vocabularies = Vocabularies()
        self.engines = EngineCache()  # models loaded in this OS process (CLI runs, local replays)
        self.models = ModelCatalog(store, self.fetcher, trust)
        self.records = RecordStore(store, self.fetcher)
        self.processes = ProcessBook(self.models, self.records, self.vocabularies, self.templates, self.identity)
        self.messages = MessageLog(self.records, self.processes)

    @classmethod
    def open(cls, store: InferenceStore, source: StoringSource | None = None, trusted_owners: Iterable[str] = (),
             operator: bool = True) -> Inference:
        """Given a store, return its inference context; `operator` False applies the node's model trust."""
        node_address = address_of(store.signer.owner)
        return cls(store, ModelTrust.open(store.root, node_address, trusted_owners, operator), source)

    @property
    def node_address(self) -> str:
        """Return the address of this node's wallet (the signer of its records)."""
        return self.records.node_address

    def identity(self) -> dict[str, Any]:
        """Return this engine's identity (computed once: it hashes the native libraries)."""
        with self._lock:
            if self._identity is None:
                self._identity = engine_identity()
            return dict(self._identity)

    # -- calls run in this OS process

    def send(self, process_id: str, caller: str, prompt: str | None = None, messages: Any = None,
             sampling: SamplingParams | None = None, fee: int = 0,
             on_text: Callable[[str], None] | None = None) -> CallResult:
        """Given a process and a prompt or messages, run one recorded call here and return its result."""
        plan = self.processes.plan(process_id, prompt=prompt, messages=messages, sampling=sampling)
        return self.run_planned(plan, caller, fee, on_text)

    def run_planned(self, plan: CallPlan, caller: str, fee: int = 0,
                    on_text: Callable[[str], None] | None = None) -> CallResult:
        """Given a planned call, run it here with its records and return the result (see send)."""
        check_caller(caller, fee)
        process = self.processes.get(plan.process_id)
        process.verified.result()  # a local call writes nothing for a model that fails its check
        # The Message is signed on another thread while llama.cpp evaluates the prompt.
        started = self._signer_pool().submit(self.messages.start_message, plan, caller, fee)
        try:
            generation = execute(unsigned_call(process, plan), self.engines, on_text=on_text,
                                 message_id_later=lambda: started.result()[0].message_id)
        except Exception as exc:
            call, message = started.result()  # a Message that could not be signed raises here
            self.messages.write_failure(call, f"{type(exc).__name__}: {exc}", message)
            raise
        call, message = started.result()
        return self.messages.write_result(call, generation, message)

    def _signer_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._signer is None:
                self._signer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="record-signer")
            return self._signer

    def close(self) -> None:
        """Finish pending record writes, then stop every thread and process and free every model."""
        with self._lock:
            signer, self._signer = self._signer, None
        if signer is not None:
            signer.shutdown(wait=True)
        self.messages.close()
        self.models.close()
        self.templates.close()
        self.engines.close()
        self.vocabularies.close()
        self.trust.close()
