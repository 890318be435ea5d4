"""The node's AO identity records: its llama Module and its Scheduler-Location, each written once.

    module_id = publish_module(store)                        # found again on every later start
    location_id = publish_scheduler_location(store, url)     # written again only when the URL changes

Both are data items signed by the node wallet. aoconnect's spawn reads the Module record's
tags through GraphQL (`Data-Protocol: ao`, `Type: Module`, `Module-Format`, `Input-Encoding`,
`Output-Encoding`); AO's scheduler lookup (aos, `ao-scheduler-utils`) reads the newest
`Scheduler-Location` its address signed (`Url`, `Time-To-Live`).
"""

from __future__ import annotations

import io
import json

from inference.ao.protocol import ACTION_INFERENCE, ACTION_REPLY, DATA_PROTOCOL, RAW_TEMPLATE, VARIANT
from inference.records import APP_NAME
from inference.store_types import InferenceStore
from permastore.protocol.tags import Tag
from permastore.protocol.wallet import address_of
from permastore.store.records import Query

MODULE_FORMAT = "llama.cpp-gguf"
INPUT_ENCODING = "UTF-8"  # a message's data is the user's text
OUTPUT_ENCODING = "JSON-1"  # a result is AO's JSON result object
MODULE_VERSION = "1"
SCHEDULER_TTL_MS = "3600000"  # how long clients may cache the location (AO's reference value)

MODULE_DESCRIPTION = {
    "name": "permastore-llama",
    "engine": "llama.cpp (llama-cpp-python) on a GGUF model stored by ID",
    "spawn_tags": {
        "Model": "ID of a GGUF model this node holds and trusts (required)",
        "System-Prompt": "the process's system prompt (or give it as the spawn's data)",
        "Chat-Template": f"a template name, or '{RAW_TEMPLATE}' for raw prompts (default: the model's own)",
        "N-Ctx, N-Batch, N-Ubatch, N-Threads, Penalty-Last-N, Flash-Attn": "engine settings (optional)",
    },
    "actions": {
        ACTION_INFERENCE: {
            "data": "the user's text",
            "tags": "Max-Tokens, Seed, Temperature, Top-K, Top-P, Min-P, Typical-P, Repeat-Penalty, "
                    "Frequency-Penalty, Presence-Penalty, Stop (repeatable), Payment",
            "reply": f"one message to the sender, Action {ACTION_REPLY}, data the generated text",
        },
    },
    "records": "every call is a node-signed Message and Result record, replayable token for token",
}


def _pairs(tags: list[tuple[str, str]]) -> list[Tag]:
    return [Tag.text(name, value) for name, value in tags]


def module_tags() -> list[tuple[str, str]]:
    """Return the tags of the node's llama Module record."""
    return [
        ("Data-Protocol", DATA_PROTOCOL), ("Variant", VARIANT), ("Type", "Module"),
        ("Module-Format", MODULE_FORMAT), ("Input-Encoding", INPUT_ENCODING), ("Output-Encoding", OUTPUT_ENCODING),
        ("App-Name", APP_NAME), ("Name", "permastore-llama"), ("Module-Version", MODULE_VERSION),
    ]


def _first(store: InferenceStore, tags: list[tuple[str, str]], sort: str):
    query = Query(tags=[(name, [value]) for name, value in tags], owners=[address_of(store.signer.owner)],
                  first=1, sort=sort)
    items = store.query(query).items
    return items[0] if items else None


def publish_module(store: InferenceStore) -> str:
    """Given the node's store, return the ID of its Module record, writing it the first time only."""
    identity = [("Type", "Module"), ("App-Name", APP_NAME), ("Module-Format", MODULE_FORMAT),
                ("Module-Version", MODULE_VERSION)]
    found = _first(store, identity, "HEIGHT_ASC")  # the oldest: the one clients already spawn with
    if found is not None:
        return found.id
    body = json.dumps(MODULE_DESCRIPTION, sort_keys=True, indent=1).encode("utf-8")
    return store.put_data(io.BytesIO(body), tags=_pairs(module_tags()), content_type="application/json").id


def scheduler_location_tags(url: str) -> list[tuple[str, str]]:
    """Given the node's public URL, return the tags of its Scheduler-Location record."""
    return [("Data-Protocol", DATA_PROTOCOL), ("Variant", VARIANT), ("Type", "Scheduler-Location"),
            ("Url", url), ("Time-To-Live", SCHEDULER_TTL_MS), ("App-Name", APP_NAME)]


def publish_scheduler_location(store: InferenceStore, url: str) -> str:
    """Given the node's store and public URL, return its Scheduler-Location record's ID.

    Clients read the newest record the scheduler signed, so a new one is written only when
    the newest names another URL (the node moved), never on a restart at the same URL.
    """
    newest = _first(store, [("Data-Protocol", DATA_PROTOCOL), ("Type", "Scheduler-Location")], "HEIGHT_DESC")
    if newest is not None and any(t.name == b"Url" and t.value == url.encode("utf-8") for t in newest.tags):
        return newest.id
    return store.put_data(io.BytesIO(url.encode("utf-8")), tags=_pairs(scheduler_location_tags(url)),
                          content_type="text/plain").id
