# Sourced by scripts/serve and scripts/test: install the project into .venv, saying what happens.
# The first install builds llama-cpp-python from source (CPU, no BLAS): minutes, with no output
# from pip for most of it, so this prints what it installs and a line every minute until done.

PYTHON_MIN="3.11"
HEARTBEAT_S="${PERMASTORE_HEARTBEAT_S:-60}"   # seconds between "still installing" lines

say() { printf '%s\n' "$*" >&2; }

check_python() {
  if ! command -v python3 >/dev/null 2>&1; then
    say "scripts: python3 not found: permastore needs Python $PYTHON_MIN or newer"
    exit 1
  fi
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "scripts: $(python3 --version 2>&1) is too old: permastore needs Python $PYTHON_MIN or newer"
    exit 1
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    say "scripts: python3 cannot make virtual environments (on Debian/Ubuntu: apt-get install python3-venv)"
    exit 1
  fi
}

# Print a line every HEARTBEAT_S seconds while a long step runs; stopped by stop_heartbeat.
start_heartbeat() {
  ( waited=0; while sleep "$HEARTBEAT_S"; do
      waited=$((waited + HEARTBEAT_S)); say "  ... still $1 ($((waited / 60)) min $((waited % 60)) s)"
    done ) &
  HEARTBEAT_PID=$!
  trap stop_heartbeat EXIT
}

stop_heartbeat() {
  if [ -n "${HEARTBEAT_PID:-}" ]; then
    kill "$HEARTBEAT_PID" 2>/dev/null || true
    wait "$HEARTBEAT_PID" 2>/dev/null || true
    HEARTBEAT_PID=""
  fi
}

# install_venv SPEC: pip-install SPEC (e.g. '.[test]') in editable mode into .venv.
install_venv() {
  local spec="$1"
  export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"   # llama-cpp-python: CPU build, no BLAS
  if [ ! -x .venv/bin/python ]; then
    check_python
    say "scripts: creating .venv with $(python3 --version 2>&1)"
    python3 -m venv .venv
  fi
  if .venv/bin/python -c 'import llama_cpp' >/dev/null 2>&1; then
    say "scripts: checking the Python dependencies in .venv ($spec) ..."
    .venv/bin/pip install --quiet --disable-pip-version-check -e "$spec"
    return
  fi
  say "scripts: installing permastore $spec and its dependencies into .venv."
  say "  The first install builds llama-cpp-python from source (CPU): this takes several minutes"
  say "  (about 8 on 2 cores) and needs a C++ compiler and cmake; pip's wheel cache makes later"
  say "  installs take seconds."
  if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
    say "scripts: warning: no C++ compiler (c++, g++ or clang++) on PATH: the llama-cpp-python build will"
    say "  fail unless pip has it cached (on Debian/Ubuntu: apt-get install build-essential cmake)"
  fi
  start_heartbeat "installing (pip)"
  .venv/bin/pip install --disable-pip-version-check --progress-bar on -e "$spec"
  stop_heartbeat
  say "scripts: installed."
}
