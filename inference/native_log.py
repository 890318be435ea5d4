"""llama.cpp's own log (model loading, KV cache notes), shown only at the level asked for.

llama.cpp logs through one process-wide callback. llama-cpp-python 0.3.36 installs one that
maps the log levels of an older ggml (its table reads this ggml's WARN as ERROR and ERROR as
DEBUG), so with `verbose=False` every warning still reaches stderr (`llama_kv_cache_iswa:
using full-size SWA cache` on every Gemma 3 load) while real errors are hidden. This module
replaces it with a callback that reads the levels of the vendored ggml and writes a line to
stderr only at or above a threshold:

    PERMASTORE_LLAMA_LOG = none | error (default) | warn | info | debug

`permastore run -v` and `replay -v` set it to info (child processes inherit it: the herder's
workers, the template sandbox). One callback per process, so one `NativeLog` per process:
`native_log()` returns it, installed on first use, kept alive as long as the library may
call it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

ENV = "PERMASTORE_LLAMA_LOG"
DEFAULT = "error"
# ggml.h (the ggml vendored in llama-cpp-python 0.3.36): enum ggml_log_level.
GGML_DEBUG, GGML_INFO, GGML_WARN, GGML_ERROR, GGML_CONT = 1, 2, 3, 4, 5
THRESHOLDS = {"debug": GGML_DEBUG, "info": GGML_INFO, "warn": GGML_WARN, "error": GGML_ERROR, "none": GGML_CONT + 1}
VERBOSE = "info"


def threshold_of(name: str | None) -> int:
    """Given a level name (None or unknown: the default), return the lowest ggml level shown."""
    return THRESHOLDS.get((name or DEFAULT).strip().lower(), THRESHOLDS[DEFAULT])


class NativeLog:
    """The process's llama.cpp log callback: lines at or above `threshold` go to stderr."""

    def __init__(self, llama_cpp: Any, threshold: int):
        self.threshold = threshold
        self._last_level = GGML_INFO
        # ctypes must keep the callback object alive while C may call it: it lives here.
        self._callback = llama_cpp.llama_log_callback(self._on_log)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    @property
    def verbose(self) -> bool:
        """True when informational lines are shown (then llama-cpp-python's own chatter is too)."""
        return self.threshold <= GGML_INFO

    def set_level(self, name: str) -> None:
        """Given a level name, show llama.cpp's lines from that level up (this process and its children)."""
        self.threshold = threshold_of(name)
        os.environ[ENV] = name

    def _on_log(self, level: int, text: bytes, user_data: Any) -> None:
        if level == GGML_CONT:  # a continued line has its first part's level
            level = self._last_level
        else:
            self._last_level = level
        if level >= self.threshold and text:
            try:
                sys.stderr.write(text.decode("utf-8", errors="replace"))
                sys.stderr.flush()
            except (OSError, ValueError):  # stderr closed: a log line is never worth an error
                pass


_lock = threading.Lock()
_installed: list[NativeLog] = []  # the one per process (a C library has one callback)


def native_log() -> NativeLog:
    """Return this process's llama.cpp log, installing it (level from $PERMASTORE_LLAMA_LOG) on first use."""
    with _lock:
        if not _installed:
            import llama_cpp
            import llama_cpp.llama  # noqa: F401 - installs llama-cpp-python's callback, replaced next

            _installed.append(NativeLog(llama_cpp, threshold_of(os.environ.get(ENV))))
        return _installed[0]
