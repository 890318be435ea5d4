"""Which stored models this node will list and load: its operator's, and those of owners it trusts.

Anyone can upload an item tagged `Type: model`; that does not make it a model this node
runs (its GGUF is parsed by llama.cpp and its chat template is code). A model counts
when its owner is this node's wallet or on the trust list (`serve --trust-model-owner`),
or when the operator added or pulled it here (approved IDs, `data/models.sqlite`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from inference.sqlite_file import SqliteFile
from permastore.store.records import ObjectInfo

MODELS_FILE = "models.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS approved_models (
    model_id TEXT PRIMARY KEY,
    how TEXT NOT NULL,              -- 'added' or 'pulled'
    approved_at REAL NOT NULL
);
"""


class ApprovedModels(SqliteFile):
    """Model IDs this node's operator added or pulled. Thread-safe."""

    FILE_NAME = MODELS_FILE
    SCHEMA = SCHEMA

    def approve(self, model_id: str, how: str = "added") -> None:
        """Record that the operator chose this model (idempotent)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO approved_models (model_id, how, approved_at) VALUES (?, ?, ?)",
                (model_id, how, time.time()),
            )

    def is_approved(self, model_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM approved_models WHERE model_id = ?", (model_id,)).fetchone()
        return row is not None


class ModelTrust:
    """Given the trusted owner addresses and the approved IDs, decide whether a stored model may run.

    `operator` True is the operator's own command line (`permastore run`, `replay`): the
    operator names the model, so any stored model may run, and what it runs is approved.
    """

    def __init__(self, owners: Iterable[str], approved: ApprovedModels, operator: bool = False):
        self.owners = frozenset(owners)
        self.approved = approved
        self.operator = operator

    @classmethod
    def open(cls, data_dir: Path | str, node_address: str, owners: Iterable[str] = (),
             operator: bool = False) -> ModelTrust:
        """Given the data folder, the node wallet's address (always trusted) and more owners, return the policy."""
        return cls({node_address, *owners}, ApprovedModels.open(data_dir), operator)

    def allows(self, info: ObjectInfo) -> bool:
        """Given a stored model's info, return True when this node may list and load it."""
        return self.operator or info.owner_address in self.owners or self.approved.is_approved(info.id)

    def approve(self, model_id: str, how: str = "added") -> None:
        self.approved.approve(model_id, how)

    def close(self) -> None:
        self.approved.close()
