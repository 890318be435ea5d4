"""`permastore worker --head URL`: run this node as a remote herder worker of a head (`serve --allow-worker`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading


def register(subparsers) -> None:
    """Given the CLI's subparsers, add `worker`."""
    parser = subparsers.add_parser(
        "worker", help="run calls for a head node's herder (serve --allow-worker ADDRESS)",
        description="Lease queued model calls from a head node, run them here, answer with Results signed "
                    "by this node's wallet (`permastore address` prints it; the head must allow it).",
    )  # fmt: skip
    # SUPPRESS: `permastore --data X worker` and `permastore worker --data X` both work.
    parser.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR", help="data folder (its own wallet)")
    parser.add_argument("--head", required=True, metavar="URL", help="the head node's URL (http://host:port)")
    parser.add_argument("--slots", type=int, default=2, metavar="N",
                        help="calls leased at once (default 2: one signs and posts while the engine runs the other)")
    parser.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    """Given parsed arguments, lease and run calls until SIGINT / SIGTERM; return the exit status."""
    from permastore.cli.errors import CliError
    from permastore.cli.stores import WRITE, opened_store

    if not args.head.startswith(("http://", "https://")):
        raise CliError(f"invalid head {args.head!r}: expected an http:// or https:// URL")
    if not 1 <= args.slots <= 64:
        raise CliError("--slots must be between 1 and 64")
    logging.basicConfig(level=logging.WARNING, format="permastore worker: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from inference.herder.remote_worker import WorkerNode

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with opened_store(args.data, WRITE) as store:
        node = WorkerNode.open(store, args.head)
        try:
            print(f"worker {node.address} leasing calls from {node.head_url}", flush=True)
            node.run(stop, args.slots)
        finally:
            node.close()
    print(f"worker stopped after {node.calls} calls", flush=True)
    return 0
