"""Inference commands: `model add|list`, `run`, `replay` (and `keys`, added by the herder's module).

Errors print one line and exit non-zero (CliError); no traceback, nothing half-written.
"""

from __future__ import annotations

import argparse
import sys

import re

from permastore.cli.errors import CliError

from inference.errors import InferenceError

EXIT_DIFFERENT = 1
EXIT_INVALID = 2
# One ID in 64 starts with '-'; argparse would take it for an option. Negative numbers
# (--temperature -1) must still reach the range check as numbers.
DASH_ID_OR_NUMBER = re.compile(r"^-(\d+|\d*\.\d+|[A-Za-z0-9_-]{42})$")


def accept_dash_ids(parser) -> None:
    """Let positional IDs and option values start with '-' (argparse's negative-number rule, widened)."""
    parser._negative_number_matcher = DASH_ID_OR_NUMBER


def _data_arg(parser) -> None:
    # SUPPRESS: `permastore --data X run` and `permastore run --data X` both work.
    parser.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR", help="data folder")


def register(subparsers) -> None:
    """Given the CLI's subparsers, add the inference commands."""
    model = subparsers.add_parser("model", help="store and list GGUF models", description="Models stored by ID.")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION")
    model_commands.required = True
    add = model_commands.add_parser("add", help="store a GGUF file; print its model ID")
    add.add_argument("file", metavar="FILE.gguf")
    _data_arg(add)
    add.set_defaults(handler=run_model_add)
    listing = model_commands.add_parser("list", help="list stored models")
    _data_arg(listing)
    listing.set_defaults(handler=run_model_list)

    run = subparsers.add_parser("run", help="run a model by ID on a prompt; print output and record IDs")
    run.add_argument("model_id", metavar="MODEL_ID")
    run.add_argument("prompt", metavar="PROMPT")
    run.add_argument("--system", metavar="TEXT", help="system prompt of the process")
    run.add_argument("--seed", type=int, help="sampling seed (default: derived from the message ID)")
    run.add_argument("--temperature", type=float, default=0.8)
    run.add_argument("--top-k", type=int, default=40)
    run.add_argument("--top-p", type=float, default=0.95)
    run.add_argument("--min-p", type=float, default=0.05)
    run.add_argument("--repeat-penalty", type=float, default=1.0)
    run.add_argument("--max-tokens", type=int, default=128)
    run.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    run.add_argument("--chat-template", metavar="NAME",
                     help="model (its own), chatml, llama-2 or phi-3 (default: the model's own, if any)")
    run.add_argument("--raw", action="store_true", help="send PROMPT as raw completion text, no chat template")
    run.add_argument("--ctx", type=int, default=None, metavar="N", help="context size (default: min(2048, model's))")
    run.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (recorded)")
    run.add_argument("--process", metavar="PID", help="send to this existing process instead of spawning one")
    run.add_argument("--caller", default="cli", help="caller recorded in the message (default: cli)")
    run.add_argument("--upstream", action="append", default=[], metavar="URL",
                     help="gateway or node to fetch the model through when it is not stored here (repeatable)")
    _data_arg(run)
    accept_dash_ids(run)  # one ID in 64 starts with '-'
    run.set_defaults(handler=run_run)

    replay = subparsers.add_parser("replay", help="re-run a recorded call and compare token for token")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("record_id", nargs="?", metavar="ID", help="a Message or Result record ID")
    target.add_argument("--process", metavar="PID", help="replay every message of a process in nonce order")
    replay.add_argument("--upstream", action="append", default=[], metavar="URL",
                        help="gateway or node to fetch the model through when it is not stored here (repeatable)")
    _data_arg(replay)
    accept_dash_ids(replay)
    replay.set_defaults(handler=run_replay)

    register_keys(subparsers)


def register_keys(subparsers) -> None:
    """`permastore keys create` (API keys bound to wallet addresses): the herder's part, added here."""
    keys = subparsers.add_parser("keys", help="API keys for the inference HTTP API")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    key_commands.required = True
    create = key_commands.add_parser("create", help="make an API key; print it (shown once)")
    create.add_argument("--address", metavar="ADDR", help="wallet address it pays from (default: the node's)")
    create.add_argument("--label", metavar="TEXT", help="a note kept with the key")
    _data_arg(create)
    create.set_defaults(handler=run_keys_create)


def run_keys_create(args) -> int:
    from inference.keys import InvalidKey, KeyStore

    address = args.address
    if address is None:
        from permastore.protocol.wallet import address_of

        store = _open_store(args)
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


def _open_store(args):
    from permastore.store import Store

    try:
        return Store.open(args.data)
    except Exception as exc:  # an unreadable data folder is the user's to fix, not a traceback
        raise CliError(f"cannot open data folder {args.data}: {exc}") from None


def run_model_add(args) -> int:
    from inference.models import add_model

    store = _open_store(args)
    try:
        print(add_model(store, args.file))
    except InferenceError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror or exc}") from None
    finally:
        store.close()
    return 0


def run_model_list(args) -> int:
    from inference.models import list_models

    store = _open_store(args)
    try:
        for entry in list_models(store):
            tags = entry.tags
            print("\t".join([
                entry.id,
                tags.get("Model-Name", "?"),
                tags.get("Model-Architecture", "?"),
                tags.get("Model-Quantization", "?"),
                f"{tags.get('Model-Parameter-Count', '?')} params",
                f"{entry.size} bytes",
            ]))
    finally:
        store.close()
    return 0


def run_run(args) -> int:
    from inference import processes
    from inference.engine import EngineSettings, SamplingParams, default_threads

    store = _open_store(args)
    try:
        sampling = SamplingParams(
            seed=args.seed, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            min_p=args.min_p, repeat_penalty=args.repeat_penalty, max_tokens=args.max_tokens,
            stop=tuple(args.stop),
        ).validate()
        source = _upstream_source(store, args.upstream)
        if args.process:
            if args.system is not None or args.chat_template or args.ctx or args.threads:
                raise CliError("--system, --chat-template, --ctx and --threads belong to the process; "
                               "they cannot change with --process")
            pid = args.process
        else:
            _, metadata = processes.model_metadata(store, args.model_id, source)
            n_ctx = args.ctx or min(processes.DEFAULT_N_CTX, metadata.context_length or processes.DEFAULT_N_CTX)
            settings = EngineSettings(n_ctx=n_ctx, n_threads=args.threads or default_threads())
            template = None if args.raw else args.chat_template
            draft = processes.draft_process(store, args.model_id, settings, args.system, template, source)
            # Check the call before anything is written: a bad prompt leaves no empty process behind.
            processes.plan_for(draft, **_call_input(draft, args), sampling=sampling)
            pid = processes.write_process(store, draft)
        process = processes.get_process(store, pid)
        if process.record.model != args.model_id:
            raise CliError(f"process {pid} runs model {process.record.model}, not {args.model_id}")
        result = processes.send(store, pid, args.caller, **_call_input(process, args), sampling=sampling)
    except InferenceError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.close()
    print(result.text)
    print(f"process: {result.process_id}")
    print(f"message: {result.message_id}")
    print(f"result:  {result.result_id}")
    print(f"seed: {result.seed}  tokens: {result.prompt_tokens} prompt + {result.completion_tokens} output  "
          f"finish: {result.finish_reason}", file=sys.stderr)
    return 0


def _upstream_source(store, urls: list[str]):
    """Given upstream URLs, return a source that verifies and stores what it reads, or None."""
    if not urls:
        return None
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"--upstream must be an http(s) URL, got {url!r}")
    from permastore.sources import FallbackSource, ReadThroughSource, UpstreamSource

    return ReadThroughSource(FallbackSource([UpstreamSource(url) for url in urls]), store)


def _call_input(process, args) -> dict:
    """Chat (the prompt as the user's message) when the process has a template, else raw text."""
    if process.template is not None and not args.raw:
        return {"messages": [{"role": "user", "content": args.prompt}]}
    return {"prompt": args.prompt}


def run_replay(args) -> int:
    from inference import replay

    store = _open_store(args)

    def on_identity(differences: list[str]) -> None:
        print("engine identity differs from the recorded one:")
        for line in differences:
            print(f"  {line}")
        sys.stdout.flush()

    def on_call(report) -> None:
        for note in report.notes:
            print(f"note: {note}")
        print(report.summary())
        sys.stdout.flush()

    try:
        source = _upstream_source(store, args.upstream)
        if args.process:
            outcome = replay.replay_process(store, args.process, on_identity=on_identity, on_call=on_call, source=source)
            identical = outcome.identical
            if identical:
                print(f"identical: process {args.process}, {len(outcome.calls)} message(s), hash chain intact")
        else:
            report = replay.replay_call(store, args.record_id, on_identity=on_identity, source=source)
            on_call(report)
            identical = report.identical or bool(report.skipped)
    except InferenceError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    finally:
        store.close()
    return 0 if identical else EXIT_DIFFERENT
