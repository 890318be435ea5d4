"""Inference commands: `model add|name|list`, `run`, `replay`, `keys create` (arguments: inference.cli)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from inference import replay
from inference.context import Inference
from inference.errors import InferenceError
from inference.keys import InvalidKey, KeyStore
from inference.native_log import VERBOSE, native_log
from inference.processes import DEFAULT_N_CTX, Process
from inference.replay import ReplayReport
from inference.sampling import EngineSettings, SamplingParams, default_threads
from inference.settings import HerderSettings, SettingsError
from permastore.cli.errors import CliError
from permastore.cli.stores import READ, WRITE, open_store
from permastore.protocol.wallet import address_of
from permastore.sources import FallbackSource, ReadThroughSource, UpstreamSource
from permastore.store import Store

EXIT_DIFFERENT = 1
EXIT_INVALID = 2


def _upstream_source(store: Store, urls: list[str]) -> ReadThroughSource | None:
    """Given upstream URLs, return a source that verifies and stores what it reads, or None."""
    if not urls:
        return None
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"--upstream must be an http(s) URL, got {url!r}")
    return ReadThroughSource(FallbackSource([UpstreamSource(url) for url in urls]), store)


def _open_inference(args: argparse.Namespace, store: Store) -> Inference:
    """The command line is the operator's: any stored model it names may run (operator trust).

    Names resolve as on the server: records of the node wallet and of the owners trusted
    in data/herder.json or $PERMASTORE_TRUST_MODEL_OWNERS.
    """
    if getattr(args, "verbose", False):
        native_log().set_level(VERBOSE)  # before any model loads, here or in a child process
    try:
        owners = HerderSettings.load(args.data).trust_model_owners
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    return Inference.open(store, source=_upstream_source(store, getattr(args, "upstream", [])),
                          trusted_owners=owners)


def run_keys_create(args: argparse.Namespace) -> int:
    address = args.address
    if address is None:
        store = open_store(args.data, WRITE)
        try:
            address = address_of(store.signer.owner)
        finally:
            store.close()
    keys = KeyStore.open(args.data)
    try:
        key = keys.create(address, label=args.label)
    except InvalidKey as exc:
        raise CliError(str(exc)) from None
    finally:
        keys.close()
    print(key)
    print(f"address: {address}", file=sys.stderr)
    return 0


def run_model_add(args: argparse.Namespace) -> int:
    store = open_store(args.data, WRITE)
    inference = _open_inference(args, store)
    try:
        print(inference.models.add(args.file, name=args.name))
        if args.name is not None:
            binding = inference.models.names.lookup(args.name)
            assert binding is not None  # models.add has just recorded this name
            print(f"name: {binding.name}", file=sys.stderr)
    except InferenceError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror or exc}") from None
    finally:
        inference.close()
        store.close()
    return 0


def run_model_name(args: argparse.Namespace) -> int:
    store = open_store(args.data, WRITE)
    inference = _open_inference(args, store)
    try:
        binding = inference.models.name(inference.models.model_id(args.model_id), args.name)
    except InferenceError as exc:
        raise CliError(str(exc)) from None
    finally:
        inference.close()
        store.close()
    print(f"{binding.name}\t{binding.model_id}")
    print(f"name record: {binding.record_id}", file=sys.stderr)
    return 0


def run_model_list(args: argparse.Namespace) -> int:
    store = open_store(args.data, READ)
    inference = _open_inference(args, store)
    try:
        for entry in inference.models.list():
            tags = entry.tags
            print("\t".join([
                entry.id,
                tags.get("Model-Name", "?"),
                tags.get("Model-Architecture", "?"),
                tags.get("Model-Quantization", "?"),
                f"{tags.get('Model-Parameter-Count', '?')} params",
                f"{entry.size} bytes",
                ",".join(entry.names) or "-",
            ]))
    finally:
        inference.close()
        store.close()
    return 0


def _sampling(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        seed=args.seed, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        min_p=args.min_p, repeat_penalty=args.repeat_penalty, max_tokens=args.max_tokens,
        stop=tuple(args.stop),
    ).validate()


def _process_for(inference: Inference, args: argparse.Namespace, sampling: SamplingParams) -> str:
    """Return the process to send to: --process, or a new one spawned for the model."""
    if args.process:
        if args.system is not None or args.chat_template or args.ctx or args.threads:
            raise CliError("--system, --chat-template, --ctx and --threads belong to the process; "
                           "they cannot change with --process")
        return args.process
    metadata = inference.models.get(args.model_id).metadata
    n_ctx = args.ctx or min(DEFAULT_N_CTX, metadata.context_length or DEFAULT_N_CTX)
    settings = EngineSettings(n_ctx=n_ctx, n_threads=args.threads or default_threads())
    template = None if args.raw else args.chat_template
    draft = inference.processes.draft(args.model_id, settings, args.system, template)
    if not args.raw:
        _say_template_choice(draft)
    # Check the call before anything is written: a bad prompt leaves no empty process behind.
    inference.processes.plan_for(draft, **_call_input(draft, args), sampling=sampling)
    draft.verified.result()
    return inference.processes.write(draft)


def _say_template_choice(process: Process) -> None:
    """Tell the operator, on stderr, which template the node chose for a model without one, or that none fits."""
    chosen = process.record.chat_template_chosen
    if not chosen:
        return
    if chosen["template"]:
        print(f"chat template: {chosen['template']} (the model has none of its own; {chosen['reason']})",
              file=sys.stderr)
    else:
        print(f"permastore: warning: the model has no chat template and none of this node's fits "
              f"({chosen['reason']}); the prompt is sent as raw text. Name one with --chat-template.",
              file=sys.stderr)


def run_run(args: argparse.Namespace) -> int:
    store = open_store(args.data, WRITE)
    inference = _open_inference(args, store)
    try:
        sampling = _sampling(args)
        args.model_id = inference.models.model_id(args.model_id)  # a name: the ID it resolves to
        pid = _process_for(inference, args, sampling)
        process = inference.processes.get(pid)
        if process.record.model != args.model_id:
            raise CliError(f"process {pid} runs model {process.record.model}, not {args.model_id}")
        result = inference.send(pid, args.caller, **_call_input(process, args), sampling=sampling)
        inference.trust.approve(args.model_id, "pulled")  # the operator ran it here: it is this node's now
    except InferenceError as exc:
        raise CliError(str(exc)) from None
    finally:
        inference.close()
        store.close()
    print(result.text)
    print(f"process: {result.process_id}")
    print(f"message: {result.message_id}")
    print(f"result:  {result.result_id}")
    print(f"seed: {result.seed}  tokens: {result.prompt_tokens} prompt + {result.completion_tokens} output  "
          f"finish: {result.finish_reason}", file=sys.stderr)
    return 0


def _call_input(process: Process, args: argparse.Namespace) -> dict[str, Any]:
    """Chat (the prompt as the user's message) when the process has a template, else raw text."""
    if process.template is not None and not args.raw:
        return {"messages": [{"role": "user", "content": args.prompt}]}
    return {"prompt": args.prompt}


def _on_identity(differences: list[str]) -> None:
    print("engine identity differs from the recorded one:")
    for line in differences:
        print(f"  {line}")
    sys.stdout.flush()


def _on_call(report: ReplayReport) -> None:
    for note in report.notes:
        print(f"note: {note}")
    print(report.summary())
    sys.stdout.flush()


def run_replay(args: argparse.Namespace) -> int:
    store = open_store(args.data, args.needs_store)  # WRITE with --upstream: fetched records are kept
    try:
        inference = _open_inference(args, store)
    except BaseException:
        store.close()
        raise
    try:
        if args.process:
            outcome = replay.replay_process(inference, args.process, on_identity=_on_identity, on_call=_on_call)
            identical = outcome.identical
            if identical:
                print(f"identical: process {args.process}, {len(outcome.calls)} message(s), hash chain intact")
        else:
            report = replay.replay_call(inference, args.record_id, on_identity=_on_identity)
            _on_call(report)
            identical = report.identical or bool(report.skipped)
    except InferenceError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    finally:
        inference.close()
        store.close()
    return 0 if identical else EXIT_DIFFERENT
