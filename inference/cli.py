"""Inference commands' arguments: `model add|name|list|pull`, `run`, `replay`, `keys create`.

Handlers: inference.commands (and inference.model_pull_cli for `model pull`), imported when they run.

Errors print one line and exit non-zero (CliError); no traceback, nothing half-written.
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Callable
from typing import Any

EXIT_DIFFERENT = 1
EXIT_INVALID = 2
# One ID in 64 starts with '-'; argparse would take it for an option. Negative numbers
# (--temperature -1) must still reach the range check as numbers.
DASH_ID_OR_NUMBER = re.compile(r"^-(\d+|\d*\.\d+|[A-Za-z0-9_-]{42})$")


def accept_dash_ids(parser: argparse.ArgumentParser) -> None:
    """Let positional IDs and option values start with '-' (argparse's negative-number rule, widened)."""
    parser._negative_number_matcher = DASH_ID_OR_NUMBER


def _data_arg(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: `permastore --data X run` and `permastore run --data X` both work.
    parser.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR", help="data folder")


def _handler(name: str, module: str = "inference.commands") -> Callable[[argparse.Namespace], int]:
    """Return a handler that imports its module (inference.commands) when it runs.

    Deliberately lazy: every `permastore` command loads this plugin to build its parser,
    and the handlers' module loads llama-cpp-python (a third of a second).
    """
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), name)(args)
    return run


def register(subparsers: Any) -> None:
    """Given the CLI's subparsers, add the inference commands."""
    model = subparsers.add_parser("model", help="store and list GGUF models", description="Models stored by ID.")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION")
    model_commands.required = True
    add = model_commands.add_parser("add", help="store a GGUF file; print its model ID")
    add.add_argument("file", metavar="FILE.gguf")
    add.add_argument("--name", metavar="NAME[:TAG]", help="also record a name for it, Ollama-style (tag: latest)")
    _data_arg(add)
    add.set_defaults(handler=_handler("run_model_add"))
    naming = model_commands.add_parser("name", help="record a name for a stored model (re-points a name in use)")
    naming.add_argument("model_id", metavar="MODEL", help="model ID (or a name already recorded)")
    naming.add_argument("name", metavar="NAME[:TAG]")
    _data_arg(naming)
    accept_dash_ids(naming)
    naming.set_defaults(handler=_handler("run_model_name"))
    listing = model_commands.add_parser("list", help="list stored models and their names")
    _data_arg(listing)
    listing.set_defaults(handler=_handler("run_model_list"))
    pulling = model_commands.add_parser("pull", help="fetch a model (ID, or a name a peer lists) from peers, "
                                        "every chunk proven; print its ID")
    pulling.add_argument("model_id", metavar="MODEL", help="model ID or name (NAME[:TAG])")
    pulling.add_argument("--peer", action="append", required=True, metavar="URL",
                         help="node to fetch from and to ask for names (repeatable)")
    _data_arg(pulling)
    accept_dash_ids(pulling)
    pulling.set_defaults(handler=_handler("run_model_pull", "inference.model_pull_cli"))

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
    run.set_defaults(handler=_handler("run_run"))

    replay = subparsers.add_parser("replay", help="re-run a recorded call and compare token for token")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("record_id", nargs="?", metavar="ID", help="a Message or Result record ID")
    target.add_argument("--process", metavar="PID", help="replay every message of a process in nonce order")
    replay.add_argument("--upstream", action="append", default=[], metavar="URL",
                        help="gateway or node to fetch the model through when it is not stored here (repeatable)")
    _data_arg(replay)
    accept_dash_ids(replay)
    replay.set_defaults(handler=_handler("run_replay"))

    register_keys(subparsers)


def register_keys(subparsers: Any) -> None:
    """`permastore keys create` (API keys bound to wallet addresses): the herder's part, added here."""
    keys = subparsers.add_parser("keys", help="API keys for the inference HTTP API")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    key_commands.required = True
    create = key_commands.add_parser("create", help="make an API key; print it (shown once)")
    create.add_argument("--address", metavar="ADDR", help="wallet address it pays from (default: the node's)")
    create.add_argument("--label", metavar="TEXT", help="a note kept with the key")
    _data_arg(create)
    create.set_defaults(handler=_handler("run_keys_create"))
