"""One `serve` per data folder: an OS lock on `serve.lock`, with the holder's PID and URL inside.

The lock is `flock(LOCK_EX)` on an open file, so the kernel releases it when the holding
process exits however it exits (a crash, kill -9): a lock file left behind by a dead
server is taken over by the next one, never stuck. The file's text (JSON: pid, url) only
says who holds it, for the refusal message; it is rewritten by every new holder.

Only `serve` takes this lock. The store's own `.open.lock` (shared by every opener) is
separate, so `put`, `get`, `info` and the other commands keep working beside a server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

from permastore.cli.errors import CliError

LOCK_FILE = "serve.lock"
MAX_LOCK_TEXT = 4096


class ServeLockHeld(Exception):
    """Another live process serves this data folder."""

    def __init__(self, data_dir: Path, pid: int | None, url: str | None):
        self.pid, self.url = pid, url
        who = f"PID {pid}" if pid else "a process"
        where = f"listening on {url}" if url else "still starting (no port yet)"
        super().__init__(f"data folder {data_dir} is already served by {who}, {where}; "
                         f"stop that server first, or serve another folder with --data")


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """Given the lock file, return the (pid, url) written in it, (None, None) when unreadable."""
    try:
        doc = json.loads(os.pread(fd, MAX_LOCK_TEXT, 0) or b"{}")
    except (OSError, ValueError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    pid, url = doc.get("pid"), doc.get("url")
    return (pid if isinstance(pid, int) else None), (url if isinstance(url, str) else None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServeLock:
    """The held lock of one data folder; `record(url)` once listening, `release()` at exit."""

    def __init__(self, path: Path, fd: int, previous_pid: int | None):
        self.path = path
        self._fd = fd
        # A holder that died without releasing anything (the OS did): worth one line to the operator.
        self.took_over_from = previous_pid if previous_pid and previous_pid != os.getpid() else None

    @classmethod
    def acquire(cls, data_dir) -> ServeLock:
        """Given a data folder (created if missing), return its lock, or raise ServeLockHeld."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by spawned workers (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, url = _read_holder(fd)
            os.close(fd)
            raise ServeLockHeld(data_dir, pid, url) from None
        except BaseException:
            os.close(fd)
            raise
        previous_pid, _ = _read_holder(fd)
        lock = cls(path, fd, previous_pid if previous_pid and not _pid_alive(previous_pid) else None)
        lock.record(None)
        return lock

    def record(self, url: str | None) -> None:
        """Write who holds the lock (this PID, and the URL once listening) for a refused second server."""
        text = json.dumps({"pid": os.getpid(), "url": url}).encode()
        os.pwrite(self._fd, text, 0)
        os.ftruncate(self._fd, len(text))

    def release(self) -> None:
        """Unlock (the file stays: removing it would race with a server taking it)."""
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = -1


@contextlib.contextmanager
def holding_serve_lock(data_dir):
    """Given a data folder, hold its serve lock for the block, or fail with a CliError naming the holder."""
    try:
        lock = ServeLock.acquire(data_dir)
    except ServeLockHeld as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot lock data folder {data_dir}: {exc.strerror or exc}") from None
    if lock.took_over_from:
        print(f"permastore: took over {lock.path} from PID {lock.took_over_from}, which is no longer running",
              file=sys.stderr, flush=True)
    try:
        yield lock
    finally:
        lock.release()
