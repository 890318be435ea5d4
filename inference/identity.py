"""Engine identity: what can change the arithmetic of a call besides its records (library, build, CPU).

A Process record carries the identity of the engine that spawned it; replay compares the
identity here with it before running. Computing it reads the native libraries (a hash
of their bytes), so owners compute it once and keep it (see `inference.context`).
"""

from __future__ import annotations

import hashlib
import platform
from typing import Any

from inference import llama_adapter

# CPU flags (from /proc/cpuinfo) whose presence changes which kernels run, hence the bits.
ARITHMETIC_CPU_FLAGS = (
    "pni", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512vbmi", "avx_vnni", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16",
)
READ_BLOCK = 1 << 20


def cpu_features() -> list[str]:
    """Return the sorted arithmetic-relevant CPU flags of this machine."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
                    break
    except OSError:
        pass
    return sorted(flag for flag in flags if flag in ARITHMETIC_CPU_FLAGS)


def native_build_hash() -> str:
    """Return sha256 over the native llama.cpp/ggml libraries llama-cpp-python loads.

    A default build compiles for the building CPU (GGML_NATIVE), so the same version
    can be different machine code; the library bytes name the exact build.
    """
    lib_dir = llama_adapter.library_dir()
    libraries = sorted(p for p in lib_dir.glob("*") if p.is_file() and not p.is_symlink()) if lib_dir.is_dir() else []
    digest = hashlib.sha256()
    for library in libraries:
        digest.update(library.name.encode() + b"\0")
        with open(library, "rb") as f:
            while block := f.read(READ_BLOCK):
                digest.update(block)
    return digest.hexdigest() if libraries else "unknown"


def engine_identity() -> dict[str, Any]:
    """Return what identifies this engine's arithmetic: library versions, build, CPU (computed each time)."""
    return {
        "llama_cpp_python": llama_adapter.version(),
        "llama_cpp_version": llama_adapter.native_version(),
        "llama_cpp_build_sha256": native_build_hash(),
        "llama_cpp_system_info": llama_adapter.system_info(),
        "machine": platform.machine(),
        "cpu_features": cpu_features(),
    }


def identity_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Given two engine identities, return one line per field that differs."""
    lines = []
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            lines.append(f"{key}: recorded {recorded.get(key)!r}, here {current.get(key)!r}")
    return lines
