"""`permastore pull ID --peer URL...`: fetch an object into the store, every chunk proven, resumable.

`permastore pull --abandon ID` drops a partially held object instead (a pull given up on): its
held chunks are deleted and their space freed; `info` and `fsck` no longer list it.

A core command (permastore.cli.commands). A progress bar on a
terminal shows bytes, rate, peers in use and chunks fetched again; nothing when piped.
The last line of standard output is the ID; exit 0 only when every byte is proven and
durable. A pull killed at any point resumes with only the missing chunks.
"""

from __future__ import annotations

import gc
import sys
import time

from permastore.cli.errors import CliError
from permastore.cli.helpers import parse_id
from permastore.cli.stores import WRITE, opened_store
from permastore.sources.rate_limit import parse_rate

POLL_S = 0.25
PIECE_CHUNKS = 32  # chunks per ranged request (8 MiB); a serving node's fetches keep FetchSettings' 4 MiB


def add_parser(subparsers) -> None:
    """Given the CLI's subparsers, add `pull`."""
    parser = subparsers.add_parser(
        "pull", help="fetch an object from peers, every chunk proven; print its ID",
        description="Fetch a tx, data item, model or bundle from peers into the data folder. Resumable.",
    )  # fmt: skip
    parser.add_argument("id", metavar="ID")
    parser.add_argument("--peer", action="append", default=[], metavar="URL",
                        help="node to fetch from (repeatable, at least one): permastore, Arweave node, ar.io gateway")
    parser.add_argument("--abandon", action="store_true",
                        help="instead of fetching: drop what is held of a partially fetched ID and free its space")
    parser.add_argument("--max-rate", type=parse_rate, default=None, metavar="RATE",
                        help="bandwidth cap over every peer, bytes/s (K, M, G suffixes); default none")
    parser.add_argument("--in-flight", type=int, default=None, metavar="N",
                        help="chunks in flight over all peers (default 128; 64 with --piece-chunks)")
    parser.add_argument("--piece-chunks", type=int, default=None, metavar="N",
                        help="chunks per ranged request to a peer (default 32: 8 MiB)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="give up after S seconds")
    parser.set_defaults(handler=run_pull, needs_store=WRITE)


def run_pull(args) -> int:
    import logging

    # Peers dropped, chunks refused: one line each on stderr, as the summary.
    logging.basicConfig(level=logging.WARNING, format="permastore: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    object_id = parse_id(args.id)
    if args.abandon:
        return _abandon(args, object_id)
    if not args.peer:
        raise CliError("pull needs at least one --peer URL to fetch from", exit_code=2)
    for url in args.peer:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"invalid peer {url!r}: expected an http:// or https:// URL")
    if args.in_flight is not None and not 1 <= args.in_flight <= 1024:
        raise CliError("--in-flight must be between 1 and 1024")
    if args.piece_chunks is not None and not 1 <= args.piece_chunks <= 256:
        raise CliError("--piece-chunks must be between 1 and 256")
    with opened_store(args.data, WRITE) as store:
        info = store.info(object_id)
        if info is not None and info.data_complete:
            print(object_id)
            return 0
        fetcher = _fetcher(store, args)
        # What is allocated by now (modules, the parser, the store) lives until exit: keep it out of
        # every garbage collection, which would otherwise walk it again and again during the fetch.
        gc.freeze()
        try:
            session = fetcher.session(object_id, bounded=False)
            _follow(session, args.timeout)
        finally:
            fetcher.close()
    _summary(session)
    print(object_id)
    return 0


def _abandon(args, object_id: str) -> int:
    """Drop a partially held object (its segment is deleted, its rows go; a tx keeps its verified header)."""
    from permastore.store.errors import PartialBusy, StoreError

    if args.peer:
        raise CliError("--abandon drops what is held here: it takes no --peer", exit_code=2)
    with opened_store(args.data, WRITE) as store:
        partial = store.partial_info(object_id)
        if partial is None:
            info = store.info(object_id)
            if info is not None and info.data_complete:
                raise CliError(f"{object_id} is held whole, not partially: nothing to abandon")
            raise CliError(f"{object_id}: not partially held here: nothing to abandon")
        writer = None
        try:  # its lock: a pull or serve filling it now keeps it
            writer = store.open_partial(object_id, partial.kind, partial.data_size, proof=partial.proof)
        except PartialBusy as exc:
            raise CliError(f"{exc}: stop that fetch first, then abandon it") from None
        except StoreError:
            pass  # its segment is gone already (fsck says so): the rows go all the same
        store.abandon_partial(object_id, writer=writer)
    kept = " (its verified header is kept)" if partial.kind == "tx" else ""
    print(f"abandoned {object_id}: {partial.held_bytes} of {partial.data_size} bytes held were released{kept}",
          file=sys.stderr)  # fmt: skip
    print(object_id)
    return 0


def _fetcher(store, args):
    from permastore.sources.engine import Fetcher
    from permastore.sources.scheduler import FetchSettings

    settings = FetchSettings(max_rate=args.max_rate)
    if args.piece_chunks is not None:
        settings.piece_chunks = args.piece_chunks
    else:
        # One fetch in the foreground, so larger pieces than a node's default: each ranged request
        # costs the serving peer ~1.5 ms of CPU whatever its size, and 8 MiB pieces halve how many
        # there are (measured: ~20% less CPU on the serving peers). 2 pieces in flight per peer,
        # 4 over all: 32 MiB of receive buffers.
        settings.piece_chunks, settings.per_peer, settings.max_in_flight = PIECE_CHUNKS, 2 * PIECE_CHUNKS, 4 * PIECE_CHUNKS
    if args.in_flight is not None:
        settings.max_in_flight = args.in_flight
        settings.per_peer = min(settings.per_peer, args.in_flight)
    return Fetcher(store, [url.rstrip("/") for url in args.peer], settings)


def _follow(session, timeout: float | None) -> None:
    """Wait for the session, drawing progress on a terminal; raise CliError with the reason on failure."""
    from permastore.sources.base import UpstreamError
    from permastore.store.errors import NotFound, StoreError

    bar = None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not session.done.wait(POLL_S):
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"{session.id}: not complete after {timeout:g} s (run pull again to resume)")
            bar = _draw(session, bar)
        _draw(session, bar)
        session.wait(0)
    except NotFound:
        raise CliError(f"{session.id}: no peer has it") from None
    except (UpstreamError, StoreError, ValueError) as exc:
        raise CliError(f"{exc} (run pull again to resume)") from None
    finally:
        if bar is not None:
            bar.close()


def _draw(session, bar):
    if not sys.stderr.isatty() or session.writer is None:
        return bar
    if bar is None:
        from tqdm import tqdm

        bar = tqdm(total=session.plan.data_size, initial=session.writer.held_bytes, unit="B", unit_scale=True,
                   unit_divisor=1024, desc="pull", file=sys.stderr)  # fmt: skip
    bar.update(session.writer.held_bytes - bar.n)
    scheduler = session.scheduler
    if scheduler is not None:
        busy = sum(1 for lane in scheduler.lanes if not lane.dropped and lane.in_flight)
        bar.set_postfix(peers=busy, refetched=scheduler.refetched, refresh=False)
    return bar


def _summary(session) -> None:
    """One line on stderr: what came from where, what was fetched again, who was dropped."""
    report = session.report
    if not report.data_size:
        return
    sent = ", ".join(f"{url} {count / 1e6:.1f} MB" for url, count in report.received.items() if count)
    line = f"pulled {report.data_size - report.held_before} of {report.data_size} bytes in {report.seconds:.1f} s"
    line += f" ({sent or 'nothing new'}); {report.refetched} chunks fetched again"
    for url, reason in report.dropped.items():
        line += f"; dropped {url}: {reason}"
    print(line, file=sys.stderr)
    if report.phases:
        spent = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report.phases.items())
        print(f"time spent (summed over workers): {spent}", file=sys.stderr)
