"""Run the real `permastore` console script against a data folder with a pre-made wallet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "arweave"
KEYFILE = VECTORS / "arweave-keyfile-fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw.json"


def console_script() -> str:
    """The permastore script of the environment running the tests."""
    beside = Path(sys.executable).parent / "permastore"
    found = str(beside) if beside.exists() else shutil.which("permastore")
    if not found:
        pytest.fail("the permastore console script is not installed in this environment")
    return found


class Cli:
    """Runs `permastore --data DIR ...` and returns the CompletedProcess (bytes)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.script = console_script()

    def __call__(self, *args, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.script, "--data", str(self.data_dir), *map(str, args)],
            input=input,
            capture_output=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"permastore {' '.join(map(str, args))} failed: {result.stderr.decode()}")
        return result


@pytest.fixture
def cli(tmp_path) -> Cli:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    fd = os.open(data_dir / "wallet.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(json.loads(KEYFILE.read_text()), out)
    return Cli(data_dir)
