"""The llama.cpp build: the installed library runs quantized models here, and the install scripts
never keep a cached wheel that cannot.

pip's wheel cache keys llama-cpp-python's wheel on its download URL, never on CMAKE_ARGS or
the CPU, so a wheel built elsewhere (or with -march=native where cpuid shows AMX the OS does
not grant) is reused silently and every quantized model dies with SIGILL. The first tests
run the real library on the committed Q8_0 fixture; the others run scripts/lib/venv.sh for
real with stand-in python and pip (a real rebuild takes minutes) and check what it decides.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

Q8_GGUF = REPO / "fixtures" / "tiny-llama-q8_0.gguf"


def test_the_q8_0_fixture_is_reproducible_and_small(tmp_path):
    target = tmp_path / "again.gguf"
    subprocess.run([sys.executable, str(REPO / "fixtures" / "make_tiny_gguf.py"), str(target), "--q8_0"],
                   check=True, capture_output=True)
    assert target.read_bytes() == Q8_GGUF.read_bytes()
    assert Q8_GGUF.stat().st_size < 1_000_000
    from inference.models import read_gguf_metadata

    assert read_gguf_metadata(Q8_GGUF).quantization == "Q8_0"


def test_the_installed_library_runs_a_quantized_model():
    """In a child process: a library with instructions this machine refuses dies with SIGILL (rc -4)."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "lib" / "llama_check.py"), str(Q8_GGUF)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "CPU :" in done.stdout  # llama.cpp's system info


def test_the_engine_runs_a_quantized_model_deterministically():
    script = (
        "from inference.engine import Engine\n"
        "from inference.sampling import EngineSettings, SamplingParams\n"
        f"e = Engine.from_path({str(Q8_GGUF)!r}, EngineSettings(n_ctx=128, n_batch=32, n_ubatch=32, n_threads=1))\n"
        "a = e.generate('the joke', SamplingParams(seed=5, max_tokens=8))\n"
        "b = e.generate('the joke', SamplingParams(seed=5, max_tokens=8))\n"
        "assert a.token_ids == b.token_ids and len(a.token_ids) >= 1, (a, b)\n"
        "e.close(); print('ok', len(a.token_ids))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("ok ")


# ---------------------------------------------------------------------------- scripts/lib/venv.sh

# State lives in files under the fake repo: `built` (the library works), `cache-good` (pip's cached
# wheel works), `cache-removed`. The stand-in python answers the probes venv.sh makes.
PYTHON_STUB = """#!/bin/sh
root="$(cd "$(dirname "$0")/../.." && pwd)"
case "$1" in
  -c)
    case "$2" in
      *importlib.metadata*) echo 0.3.36 ;;
      *os.path.dirname*) echo "$root/lib" ;;
    esac
    exit 0 ;;
  scripts/lib/llama_check.py)
    echo "check $2" >> "$root/python.log"
    if [ -f "$root/built" ]; then echo "CPU : AVX2 = 1"; exit 0; fi
    echo "Illegal instruction" >&2; exit 132 ;;
esac
exit 0
"""
PIP_STUB = """#!/bin/sh
root="$(cd "$(dirname "$0")/../.." && pwd)"
echo "$* | CMAKE_ARGS=$CMAKE_ARGS" >> "$root/pip.log"
case "$*" in
  *"cache remove"*) touch "$root/cache-removed" ;;
  *force-reinstall*)
    # A reinstall takes pip's cached wheel while there is one, else builds with CMAKE_ARGS.
    if [ -f "$root/cache-removed" ] || [ -f "$root/cache-good" ]; then touch "$root/built"; fi
    echo "lib changed" >> "$root/lib/libggml-cpu.so" ;;
esac
exit 0
"""


@pytest.fixture
def fake_repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts")
    (root / "fixtures").mkdir()
    shutil.copy(Q8_GGUF, root / "fixtures" / Q8_GGUF.name)
    (root / "lib").mkdir()
    (root / "lib" / "libggml-cpu.so").write_text("stale build\n")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", PYTHON_STUB), ("pip", PIP_STUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return root


def ensure(root: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {key: value for key, value in os.environ.items() if key != "CMAKE_ARGS"}
    full_env.update(PERMASTORE_HEARTBEAT_S="1", HOME=str(root / "home"), **env)
    script = 'set -e; . scripts/lib/venv.sh; CMAKE_ARGS="${CMAKE_ARGS:-$(default_cmake_args)}"; export CMAKE_ARGS; ensure_llama'
    return subprocess.run(["bash", "-c", script], cwd=root, capture_output=True, text=True, env=full_env, timeout=60)


def pip_calls(root: Path) -> list[str]:
    return (root / "pip.log").read_text().splitlines() if (root / "pip.log").exists() else []


def test_a_cached_wheel_that_cannot_run_here_is_dropped_and_rebuilt(fake_repo):
    result = ensure(fake_repo)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "cannot run a quantized model on this CPU" in err and "SIGILL" in err
    assert "removing it and building llama-cpp-python here" in err
    assert "rebuilt; it runs quantized models on this CPU" in err
    calls = pip_calls(fake_repo)
    # First the cached copy (seconds), then the cache entry dropped, then a build with the project's flags.
    assert calls[0].startswith("install --quiet --disable-pip-version-check --force-reinstall --no-deps "
                               "llama-cpp-python==0.3.36")
    assert calls[1].startswith("cache remove llama_cpp_python")
    assert calls[2].startswith("install --disable-pip-version-check --force-reinstall --no-deps llama-cpp-python==0.3.36")
    assert "-DGGML_NATIVE=ON" in calls[2] and "-DGGML_BLAS=OFF" in calls[2]
    if os.uname().machine in ("x86_64", "amd64"):
        assert "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in calls[2]
    # Checked: the stamp records the working library; the next run checks nothing and installs nothing.
    assert (fake_repo / ".venv" / ".permastore-llama-ok").is_file()
    checks = (fake_repo / "python.log").read_text().count("check fixtures/tiny-llama-q8_0.gguf")
    again = ensure(fake_repo)
    assert again.returncode == 0 and again.stderr == ""
    assert pip_calls(fake_repo) == calls
    assert (fake_repo / "python.log").read_text().count("check") == checks


def test_a_good_cached_wheel_is_reinstalled_without_a_build(fake_repo):
    (fake_repo / "cache-good").touch()
    result = ensure(fake_repo)
    assert result.returncode == 0, result.stderr
    assert "llama-cpp-python works now." in result.stderr
    assert not any("cache remove" in call for call in pip_calls(fake_repo))


def test_a_working_library_is_left_alone(fake_repo):
    (fake_repo / "built").touch()
    result = ensure(fake_repo)
    assert result.returncode == 0 and result.stderr == ""
    assert pip_calls(fake_repo) == []


def test_a_build_that_still_fails_stops_the_install(fake_repo):
    (fake_repo / ".venv" / "bin" / "pip").write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/../../pip.log"\n')
    result = ensure(fake_repo)
    assert result.returncode == 1
    assert "llama-cpp-python built here still cannot run a quantized model" in result.stderr
    assert "Set CMAKE_ARGS for your CPU" in result.stderr


def test_the_operators_cmake_args_win(fake_repo):
    result = ensure(fake_repo, CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON")
    assert result.returncode == 0, result.stderr
    assert all("CMAKE_ARGS=-DGGML_NATIVE=OFF -DGGML_AVX2=ON" in call for call in pip_calls(fake_repo))
