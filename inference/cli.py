"""Inference commands' arguments: `model add|name|list|pull`, `run`, `replay`, `keys create`.

Handlers: inference.commands (and inference.model_pull_cli for `model pull`), imported when they run.

Errors print one line and exit non-zero (CliError); no traceback, nothing half-written.
`--data` and IDs that start with '-' are the core CLI's (permastore.cli.options); each
command declares whether it reads or writes the store (`needs_store`): reading ones
(`model list`, `replay`) fail "no store at DIR" and create nothing.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from inference.chat import MODEL_TEMPLATE, NAMED_TEMPLATES
from permastore.cli.stores import READ, WRITE


def _handler(name: str, module: str = "inference.commands") -> Callable[[argparse.Namespace], int]:
    """Return a handler that imports its module (inference.commands) when it runs.

    Deliberately lazy: every `permastore` command loads this plugin to build its parser,
    and the handlers' module loads llama-cpp-python (a third of a second).
    """
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), name)(args)
    return run


def _template_help() -> str:
    named = ", ".join(NAMED_TEMPLATES)
    return (f"chat template: {MODEL_TEMPLATE} (the GGUF's own) or one of {named} "
            "(default: the model's own; without one, the template its architecture and vocabulary "
            "call for, recorded in the process)")


class UpstreamWrites(argparse.Action):
    """`--upstream URL`, repeatable: what is fetched through it is verified and stored here, so a
    reading command given one writes (`needs_store` becomes WRITE: a node holding nothing yet
    replays a Result by its ID alone)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        namespace.needs_store = WRITE


def _verbose_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show llama.cpp's own log (loading, KV cache) on stderr")


def register(subparsers: Any) -> None:
    """Given the CLI's subparsers, add the inference commands."""
    model = subparsers.add_parser("model", help="store and list GGUF models", description="Models stored by ID.")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION")
    model_commands.required = True
    add = model_commands.add_parser("add", help="store a GGUF file; print its model ID")
    add.add_argument("file", metavar="FILE.gguf")
    add.add_argument("--name", metavar="NAME[:TAG]", help="also record a name for it, Ollama-style (tag: latest)")
    add.set_defaults(handler=_handler("run_model_add"), needs_store=WRITE)
    naming = model_commands.add_parser("name", help="record a name for a stored model (re-points a name in use)")
    naming.add_argument("model_id", metavar="MODEL", help="model ID (or a name already recorded)")
    naming.add_argument("name", metavar="NAME[:TAG]")
    naming.set_defaults(handler=_handler("run_model_name"), needs_store=WRITE)
    listing = model_commands.add_parser("list", help="list stored models and their names")
    listing.set_defaults(handler=_handler("run_model_list"), needs_store=READ)
    pulling = model_commands.add_parser("pull", help="fetch a model (ID, or a name a peer lists) from peers, "
                                        "every chunk proven; print its ID")
    pulling.add_argument("model_id", metavar="MODEL", help="model ID or name (NAME[:TAG])")
    pulling.add_argument("--peer", action="append", required=True, metavar="URL",
                         help="node to fetch from and to ask for names (repeatable)")
    pulling.set_defaults(handler=_handler("run_model_pull", "inference.model_pull_cli"), needs_store=WRITE)
    register_run(subparsers)

    replay = subparsers.add_parser("replay", help="re-run a recorded call and compare token for token")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("record_id", nargs="?", metavar="ID", help="a Message or Result record ID")
    target.add_argument("--process", metavar="PID", help="replay every message of a process in nonce order")
    replay.add_argument("--upstream", action=UpstreamWrites, default=[], metavar="URL",
                        help="gateway or node to fetch the records and model through when they are not stored "
                             "here (repeatable; they are stored here, so the store is created if need be)")
    _verbose_arg(replay)
    replay.set_defaults(handler=_handler("run_replay"), needs_store=READ)

    register_keys(subparsers)


def register_run(subparsers: Any) -> None:
    """`permastore run MODEL PROMPT`: spawn a process (or use --process) and record one call."""
    run = subparsers.add_parser("run", help="run a model by ID or name on a prompt; print output and record IDs")
    run.add_argument("model_id", metavar="MODEL", help="model ID or name (NAME[:TAG])")
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
    run.add_argument("--chat-template", metavar="NAME", help=_template_help())
    run.add_argument("--raw", action="store_true", help="send PROMPT as raw completion text, no chat template")
    run.add_argument("--ctx", type=int, default=None, metavar="N", help="context size (default: min(2048, model's))")
    run.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (recorded)")
    run.add_argument("--process", metavar="PID", help="send to this existing process instead of spawning one")
    run.add_argument("--caller", default="cli", help="caller recorded in the message (default: cli)")
    run.add_argument("--upstream", action="append", default=[], metavar="URL",
                     help="gateway or node to fetch the model through when it is not stored here (repeatable)")
    _verbose_arg(run)
    run.set_defaults(handler=_handler("run_run"), needs_store=WRITE)


def register_keys(subparsers: Any) -> None:
    """`permastore keys create` (API keys bound to wallet addresses): the herder's part, added here."""
    keys = subparsers.add_parser("keys", help="API keys for the inference HTTP API")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    key_commands.required = True
    create = key_commands.add_parser("create", help="make an API key; print it (shown once)")
    create.add_argument("--address", metavar="ADDR", help="wallet address it pays from (default: the node's)")
    create.add_argument("--label", metavar="TEXT", help="a note kept with the key")
    create.set_defaults(handler=_handler("run_keys_create"), needs_store=WRITE)
