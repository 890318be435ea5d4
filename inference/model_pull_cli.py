"""`permastore model pull MODEL --peer URL...`: a model (ID, or a name a peer lists) from peers, proven, adopted.

The same pull as `POST /api/pull` (inference.model_pull): the fetch engine proves every
chunk (resumable: run it again after a failure), then `model add`'s checks run on the
stored file, the model is approved here and, when a peer supplied the name, the name is
recorded (signed by the node wallet). A progress bar on a terminal; the model ID is the
last line of standard output (the name on stderr).

`permastore pull ID --peer URL` then `permastore model name ID NAME` does the same by hand
(the core `pull` knows objects, not names or models).
"""

from __future__ import annotations

import argparse
import sys

from inference.commands import _open_inference, _open_store
from inference.errors import InferenceError, ModelNotFound
from inference.model_pull import ModelPuller
from inference.peer_names import resolve_on_peers
from permastore.cli.errors import CliError


def _resolve(puller: ModelPuller, ref: str) -> tuple[str, str | None]:
    """Given a reference, return (model ID, the name to record: set only when the peers named it)."""
    try:
        return puller.inference.models.model_id(ref), None
    except ModelNotFound:
        found = resolve_on_peers(puller.urls(), ref)
        if found is None:
            raise ModelNotFound(f"model '{ref}' not found on this node or its peers") from None
        return found.model_id, found.name


def _fetch(puller: ModelPuller, model_id: str) -> None:
    """Fetch a model not held, drawing progress on a terminal."""
    session = puller.start(model_id)
    bar = None
    try:
        for held, total in puller.follow(session):
            if not sys.stderr.isatty():
                continue
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="pull", file=sys.stderr)
            bar.update(held - bar.n)
    finally:
        if bar is not None:
            bar.close()


def run_model_pull(args: argparse.Namespace) -> int:
    from permastore.sources.engine import Fetcher

    for url in args.peer:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"invalid peer {url!r}: expected an http:// or https:// URL")
    store = _open_store(args)
    inference = _open_inference(args, store)
    fetcher = Fetcher(store, [url.rstrip("/") for url in args.peer])
    puller = ModelPuller(inference, fetcher)
    try:
        model_id, name = _resolve(puller, args.model_id)
        if not puller.held(model_id):
            _fetch(puller, model_id)
        puller.check(model_id)
        puller.adopt(model_id, name)
    except InferenceError as exc:
        raise CliError(str(exc)) from None
    finally:
        fetcher.close()
        inference.close()
        store.close()
    if name is not None:
        print(f"name: {name}", file=sys.stderr)
    print(model_id)
    return 0
