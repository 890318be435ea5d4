"""Process memory and disk figures for the benchmarks (from /proc), and page-cache eviction."""

from __future__ import annotations

import os
from pathlib import Path


def dir_size(path: Path) -> int:
    """Return the bytes of disk used under a folder (allocated blocks, so holes count as 0)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def workers_of(pid: int) -> list[int]:
    """Return the pids of a server's herder workers (spawned children, not the resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    is_worker = b"spawn_main" in cmdline.read()
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid and is_worker:
                found.append(int(entry))
    return found


def memory_of(pid: int) -> dict:
    """Return a process's RSS split (MiB): total, private, shared file pages, PSS, peak."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                key, _, value = line.partition(":")
                if key in ("Pss", "Private_Clean", "Private_Dirty", "Shared_Clean"):
                    fields[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return {
        "rss_mib": fields.get("VmRSS"),
        "peak_rss_mib": fields.get("VmHWM"),
        "anon_mib": fields.get("RssAnon"),
        "file_mib": fields.get("RssFile"),
        "pss_mib": fields.get("Pss"),
        "private_mib": (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) or None,
    }


def evict_file(path: Path, sync: bool = False) -> None:
    """Push a file's pages out of the page cache, so the next read comes from the disk (as after a
    restart); sync: write its dirty pages first (a writable file), or the kernel keeps them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if sync:
            os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict_folder(folder: Path, sync: bool = False) -> None:
    """evict_file for every file under folder (files that cannot be opened are skipped)."""
    for path in folder.rglob("*"):
        if path.is_file():
            try:
                evict_file(path, sync=sync and os.access(path, os.W_OK))
            except OSError:
                continue
