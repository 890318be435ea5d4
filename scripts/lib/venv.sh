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

# llama-cpp-python's build: this machine's SIMD (GGML_NATIVE: -march=native), no BLAS, and on
# x86 no AMX. cpuid can advertise AMX where the kernel or hypervisor does not grant the tile
# state; -march=native then compiles ggml's AMX kernels, and every quantized model (Q4_K,
# Q8_0: Gemma 3 270M) dies with SIGILL while F16 models still run. ggml's runtime CPU
# dispatch (GGML_CPU_ALL_VARIANTS) reads the same cpuid bits, so it would pick the AMX build
# too. GGML_NATIVE=ON is explicit because SOURCE_DATE_EPOCH in the environment turns it off
# (and with it every SIMD flag).
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
default_cmake_args() {
  local args="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON -DGGML_BLAS=OFF"
  case "$(uname -m)" in
    x86_64|amd64|i?86) args="$args \"-DCMAKE_C_FLAGS=$NO_AMX\" \"-DCMAKE_CXX_FLAGS=$NO_AMX\"" ;;
  esac
  printf '%s' "$args"
}

LLAMA_CHECK_MODEL="fixtures/tiny-llama-q8_0.gguf"
LLAMA_STAMP=".venv/.permastore-llama-ok"

# A fingerprint of the installed llama.cpp libraries and this CPU: the check is redone when either changes.
llama_fingerprint() {
  local lib
  lib="$(.venv/bin/python -c 'import llama_cpp, os; print(os.path.join(os.path.dirname(llama_cpp.__file__), "lib"))' 2>/dev/null)" || return 1
  { cat "$lib"/*.so 2>/dev/null; grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null; uname -m; } | sha256sum | cut -d' ' -f1
}

# check_llama: 0 when the installed llama-cpp-python runs a quantized model on this CPU
# (in a child process: a SIGILL kills it, not this script). LLAMA_CHECK_ERR says why not.
check_llama() {
  local out status
  out="$(.venv/bin/python scripts/lib/llama_check.py "$LLAMA_CHECK_MODEL" 2>&1)"
  status=$?
  if [ "$status" -eq 0 ]; then
    llama_fingerprint > "$LLAMA_STAMP" 2>/dev/null || true
    return 0
  fi
  case "$status" in
    132) LLAMA_CHECK_ERR="killed by SIGILL (an instruction this CPU or its OS does not allow)" ;;
    *) LLAMA_CHECK_ERR="exit status $status: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')" ;;
  esac
  return 1
}

llama_version() {
  .venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null
}

# ensure_llama: check the installed llama-cpp-python (skipped while the stamp matches); when
# it cannot run here, reinstall it from pip's cache, and if that copy fails too, drop the
# cached wheel (pip's wheel cache keys on the download URL, never on CMAKE_ARGS or the CPU)
# and build it here with the flags above.
ensure_llama() {
  [ -f "$LLAMA_CHECK_MODEL" ] || return 0
  if [ -f "$LLAMA_STAMP" ] && [ "$(cat "$LLAMA_STAMP")" = "$(llama_fingerprint)" ]; then
    return 0
  fi
  check_llama && return 0
  local version
  version="$(llama_version)"
  say "scripts: the installed llama-cpp-python $version cannot run a quantized model on this CPU:"
  say "  $LLAMA_CHECK_ERR. Reinstalling it from pip's cache ..."
  .venv/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "llama-cpp-python==$version"
  check_llama && { say "scripts: llama-cpp-python works now."; return 0; }
  say "scripts: pip's cached llama-cpp-python wheel was built for another CPU or with other flags"
  say "  ($LLAMA_CHECK_ERR): removing it and building llama-cpp-python here."
  say "  CMAKE_ARGS=$CMAKE_ARGS"
  say "  This takes several minutes (about 8 on 2 cores)."
  .venv/bin/pip cache remove llama_cpp_python >/dev/null 2>&1 || true
  start_heartbeat "building llama-cpp-python"
  .venv/bin/pip install --disable-pip-version-check --force-reinstall --no-deps "llama-cpp-python==$version"
  stop_heartbeat
  if ! check_llama; then
    say "scripts: llama-cpp-python built here still cannot run a quantized model: $LLAMA_CHECK_ERR"
    say "  Set CMAKE_ARGS for your CPU (see README, Set up) and run this script again."
    exit 1
  fi
  say "scripts: llama-cpp-python rebuilt; it runs quantized models on this CPU."
}

# install_venv SPEC: pip-install SPEC (e.g. '.[test]') in editable mode into .venv.
install_venv() {
  local spec="$1"
  CMAKE_ARGS="${CMAKE_ARGS:-$(default_cmake_args)}"   # llama-cpp-python: see default_cmake_args
  export CMAKE_ARGS
  if [ ! -x .venv/bin/python ]; then
    check_python
    say "scripts: creating .venv with $(python3 --version 2>&1)"
    python3 -m venv .venv
  fi
  if .venv/bin/python -c 'import llama_cpp' >/dev/null 2>&1; then
    say "scripts: checking the Python dependencies in .venv ($spec) ..."
    .venv/bin/pip install --quiet --disable-pip-version-check -e "$spec"
    ensure_llama
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
  ensure_llama
  say "scripts: installed."
}
