"""Run the real `permastore` console script against data folders made for each test.

Every run gets HOME pointed at a folder of its own and no $PERMASTORE_DATA (unless a test
sets them), so no test reads or writes the real ~/.permastore.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from permastore.store import Store
from tests.helpers import keys


def console_script() -> str:
    """The permastore script of the environment running the tests."""
    beside = Path(sys.executable).parent / "permastore"
    found = str(beside) if beside.exists() else shutil.which("permastore")
    if not found:
        pytest.fail("the permastore console script is not installed in this environment")
    return found


def isolated_env(home: Path, **overrides: str | None) -> dict:
    """Return os.environ with HOME=home, no PERMASTORE_DATA, then overrides (None removes a name)."""
    env = {name: value for name, value in os.environ.items() if name != "PERMASTORE_DATA"}
    env["HOME"] = str(home)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_permastore(*args, env: dict, cwd: Path | None = None, input: bytes | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
    """Run `permastore ARGS...` exactly as given (no --data added); return the CompletedProcess (bytes)."""
    return subprocess.run(
        [console_script(), *map(str, args)], input=input, capture_output=True, env=env, cwd=cwd, timeout=timeout
    )


def seed_wallet(data_dir: Path) -> Path:
    """Put the fixture wallet in data_dir (0600): a new RSA-4096 key would cost seconds per test."""
    return keys.seed_wallet(data_dir)


def make_store(data_dir: Path) -> Path:
    """Create a store (fixture wallet, empty index) in data_dir; return it."""
    seed_wallet(data_dir)
    Store.open(data_dir).close()
    return data_dir


class Cli:
    """Runs `permastore --data DIR ...` and returns the CompletedProcess (bytes)."""

    def __init__(self, data_dir: Path, home: Path):
        self.data_dir = data_dir
        self.home = home
        self.script = console_script()

    @property
    def env(self) -> dict:
        return isolated_env(self.home)

    def __call__(self, *args, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = run_permastore("--data", self.data_dir, *args, env=self.env, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"permastore {' '.join(map(str, args))} failed: {result.stderr.decode()}")
        return result


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli(tmp_path, home) -> Cli:
    return Cli(make_store(tmp_path / "data"), home)


def start_serve(log_path: Path, *args: str, env: dict, cwd: Path | None = None):
    """Start `permastore serve --port 0 ARGS...` (no --data added) with env; return a RunningServer."""


    from tests.helpers.servers import wait_until_serving

    log = open(log_path, "wb")
    command = [console_script(), "serve", "--port", "0", "--mine-interval", "0", *args]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return wait_until_serving(process, log_path)


def tree_of(root: Path) -> dict[str, bytes | None]:
    """Given a folder, return {relative path: bytes (files) or None (folders)}; {} when it does not exist."""
    if not root.exists():
        return {}
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        found[relative] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found
