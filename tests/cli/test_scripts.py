"""Issue 10 points 1 and 9: scripts/serve and scripts/test, run for real in a copy of the repository.

The installers they call are stand-ins that record their arguments (a real first install
builds llama-cpp-python for minutes): what is under test is what the scripts say, which pip
flags they pass, and what they run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PYTHON_STUB = """#!/bin/sh
if [ "$1" = "-c" ]; then case "$2" in *llama_cpp*) exit "${STUB_LLAMA_RC:-1}";; esac; exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "pytest" ]; then echo "pytest ran: $*"; exit 0; fi
exit 0
"""
PIP_STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
sleep "${STUB_PIP_SLEEP:-0}"
"""
PERMASTORE_STUB = """#!/bin/sh
echo "permastore ran: $*"
"""


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of scripts/ with a .venv whose python, pip and permastore are stand-ins."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", PYTHON_STUB), ("pip", PIP_STUB), ("permastore", PERMASTORE_STUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    interop = root / "tests" / "interop"
    interop.mkdir(parents=True)
    (interop / "package.json").write_text("{}")
    (interop / "package-lock.json").write_text("{}")
    return root


def run_script(repo: Path, name: str, *args: str, path: str | None = None, **env: str):
    full_env = dict(os.environ, STUB_LOG=str(repo / "pip.log"), PERMASTORE_HEARTBEAT_S="1", **env)
    full_env["HOME"] = str(repo / "home")
    if path is not None:
        full_env["PATH"] = path
    return subprocess.run(["bash", str(repo / "scripts" / name), *args], capture_output=True, text=True,
                          env=full_env, timeout=60)  # fmt: skip


def test_a_first_install_says_what_it_does_and_keeps_talking(repo):
    result = run_script(repo, "serve", "--port", "0", STUB_LLAMA_RC="1", STUB_PIP_SLEEP="2.5")
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "installing permastore . and its dependencies into .venv" in err
    assert "builds llama-cpp-python from source" in err and "several minutes" in err
    assert "... still installing (pip) (0 min 1 s)" in err  # a line while pip says nothing
    assert "installed." in err
    pip_args = (repo / "pip.log").read_text()
    assert "--quiet" not in pip_args and "-e ." in pip_args and "--progress-bar on" in pip_args
    # serve runs the node on the default data folder: no --data, so not the repository's ./data.
    assert result.stdout.strip() == "permastore ran: serve --port 0"


def test_a_later_install_is_quiet_and_quick(repo):
    result = run_script(repo, "serve", STUB_LLAMA_RC="0")
    assert result.returncode == 0, result.stderr
    assert "checking the Python dependencies in .venv (.)" in result.stderr
    assert "several minutes" not in result.stderr and "still" not in result.stderr
    assert "--quiet" in (repo / "pip.log").read_text()


def test_scripts_test_names_missing_node_and_compiler(repo, tmp_path):
    tools = tmp_path / "tools"  # a PATH with the basics and neither node, npm nor a C++ compiler
    tools.mkdir()
    for tool in ("bash", "sh", "sha256sum", "cut", "cat", "sleep", "dirname"):
        os.symlink(shutil.which(tool), tools / tool)
    result = run_script(repo, "test", "-q", path=str(tools), STUB_LLAMA_RC="1")
    assert result.returncode == 1
    assert "no C++ compiler (c++, g++ or clang++) on PATH" in result.stderr
    assert "node and npm not found: the interop tests need Node.js 18 or newer" in result.stderr
    assert "pytest ran" not in result.stdout


def test_scripts_test_runs_pytest_with_its_arguments(repo):
    stamp = repo / "tests" / "interop" / "node_modules" / ".permastore-lock.sha256"
    stamp.parent.mkdir(parents=True)
    digest = subprocess.run(["sha256sum", str(repo / "tests" / "interop" / "package-lock.json")],
                            capture_output=True, text=True, check=True).stdout.split()[0]  # fmt: skip
    stamp.write_text(digest + "\n")
    result = run_script(repo, "test", "-q", "-x", STUB_LLAMA_RC="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pytest ran: -m pytest -q -x"
    assert "-e .[test]" in (repo / "pip.log").read_text()
