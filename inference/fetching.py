"""Fetch through a storing source: the one way inference gets models and records it does not hold."""

from __future__ import annotations

import threading
from collections.abc import Callable

from inference.errors import InferenceError
from inference.store_types import InferenceStore, StoringSource
from permastore.store.errors import NotFound, StoreError
from permastore.store.records import ObjectInfo

MAX_LOCKS = 1024  # per-ID locks kept for fetches in progress; idle ones are dropped past this


class SourceFetcher:
    """Given a storing source (or None: nothing is fetched), fetch objects into the store, one fetch per ID at a time."""

    def __init__(self, source: StoringSource | None):
        self.source = source
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.source is not None

    def fetch(self, object_id: str, missing: Callable[[str], InferenceError],
              failed: Callable[[str], InferenceError], held: Callable[[], bool]) -> None:
        """Store `object_id` through the source unless `held()` says another fetch already did.

        Raises missing(reason) when no upstream has it, failed(reason) when upstreams
        failed or served bytes that do not verify (nothing is stored then).
        """
        if self.source is None:
            raise missing("no upstream given")
        lock = self._lock_for(object_id)
        try:
            with lock:
                if held():
                    return
                self.source.fetch(object_id)
        except NotFound:
            raise missing("neither stored here nor upstream") from None
        except StoreError as exc:  # sources.UpstreamError: upstreams failed or served unverifiable bytes
            raise failed(str(exc)) from None
        finally:
            self._release(object_id, lock)

    def held_info(self, store: InferenceStore, object_id: str, missing: Callable[[str], InferenceError],
                  failed: Callable[[str], InferenceError]) -> ObjectInfo | None:
        """Given a store and an ID, return its ObjectInfo (or None), fetched first when its data is not held here."""
        info = store.info(object_id)
        if (info is None or not info.data_complete) and self.enabled:
            self.fetch(object_id, missing, failed, held=lambda: _complete(store.info(object_id)))
            info = store.info(object_id)
        return info

    def _lock_for(self, object_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(object_id, threading.Lock())

    def _release(self, object_id: str, lock: threading.Lock) -> None:
        with self._guard:
            if len(self._locks) > MAX_LOCKS and not lock.locked():
                self._locks.pop(object_id, None)


def _complete(info: ObjectInfo | None) -> bool:
    return info is not None and info.data_complete
