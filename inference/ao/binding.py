"""Which node record an AO item is bound to, found from the records alone.

A Process or Message record that answers a caller's signed item names it in its `request`
field (and `Request` tag), and is signed by the scheduler the process names. So:

    spawn item S    -> the Process record tagged Request=S, signed by S's Scheduler
    message item M  -> M's target S -> S's Scheduler -> the Message record tagged Request=M, signed by it

Only records signed by that scheduler count: anyone can post an item tagged Request=M.
"""

from __future__ import annotations

from inference.ao.protocol import DATA_PROTOCOL, TYPE_MESSAGE, TYPE_PROCESS
from inference.records import APP_NAME, MessageRecord, ProcessRecord, RecordStore
from permastore.protocol import b64url
from permastore.store.records import ObjectInfo


def _bound(records: RecordStore, kind: str, request_id: str, scheduler: str) -> str | None:
    ids = records.query_ids([("Type", [kind]), ("App-Name", [APP_NAME]), ("Request", [request_id])],
                            owners=[scheduler])
    return ids[-1] if ids else None  # store order is newest first: the first one written


def process_record_for(records: RecordStore, spawn_id: str, scheduler: str) -> str | None:
    """Given an AO process ID (its spawn item) and its scheduler's address, return its Process record's ID."""
    return _bound(records, ProcessRecord.type, spawn_id, scheduler)


def message_record_for(records: RecordStore, message_id: str, scheduler: str) -> str | None:
    """Given an AO message ID and its process's scheduler, return the ID of the Message record bound to it."""
    return _bound(records, MessageRecord.type, message_id, scheduler)


def last_tag(info: ObjectInfo, name: str) -> str | None:
    """Given a stored item, return the last value of a tag (the one AO clients wrote last), or None."""
    wanted = name.encode("utf-8")
    values = [t.value for t in info.tags if t.name == wanted]
    return values[-1].decode("utf-8", errors="replace") if values else None


def _is_ao(info: ObjectInfo, kind: str) -> bool:
    protocols = [t.value for t in info.tags if t.name == b"Data-Protocol"]
    return DATA_PROTOCOL.encode() in protocols and last_tag(info, "Type") == kind and last_tag(info, "App-Name") != APP_NAME


def scheduler_of(records: RecordStore, spawn_id: str) -> str | None:
    """Given an AO process ID, return the Scheduler its stored spawn item names (None: not stored or not one)."""
    info = records.store.info(spawn_id)
    if info is None or not _is_ao(info, TYPE_PROCESS) or info.target:
        return None
    return last_tag(info, "Scheduler")


def record_for_item(records: RecordStore, item_id: str) -> str | None:
    """Given any ID, return the Message record an AO message item of that ID is bound to (None otherwise).

    `permastore replay M` and `POST /replay/M` take an AO message's own ID this way.
    """
    if not isinstance(item_id, str) or not b64url.is_id(item_id):
        return None
    info = records.store.info(item_id)
    if info is None or not _is_ao(info, TYPE_MESSAGE) or not info.target:
        return None
    scheduler = scheduler_of(records, info.target)
    return message_record_for(records, item_id, scheduler) if scheduler else None
