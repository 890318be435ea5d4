"""Shared fixtures for inference tests: the tiny GGUF, a real store, a model stored by ID."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from inference.context import Inference
from permastore.store import Store

REPO = Path(__file__).resolve().parents[2]
TINY_GGUF = REPO / "fixtures" / "tiny-llama.gguf"


@pytest.fixture(scope="session")
def tiny_gguf() -> Path:
    """Return the committed tiny llama GGUF."""
    assert TINY_GGUF.is_file(), "run: python fixtures/make_tiny_gguf.py"
    return TINY_GGUF


@pytest.fixture
def store(tmp_path):
    """Return a real store in a fresh data folder."""
    opened = Store.open(tmp_path / "data")
    yield opened
    opened.close()


@pytest.fixture
def inference(store):
    """Return the inference context of `store` (the command line's: operator trust)."""
    context = Inference.open(store)
    yield context
    context.close()


@pytest.fixture
def model_id(inference, tiny_gguf) -> str:
    """Return the ID of the tiny model stored in `store`."""
    return inference.models.add(tiny_gguf)


def make_gguf(path: Path, **options) -> Path:
    """Write a variant of the tiny model (see fixtures/make_tiny_gguf.write_tiny_gguf) and return its path."""
    spec = importlib.util.spec_from_file_location("make_tiny_gguf", REPO / "fixtures" / "make_tiny_gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tiny_gguf(path, **options)
