"""Links for the distribution bench: each serving port on loopback behind its own rate (tc htb).

On loopback every peer is as fast as the CPU, so several peers cannot beat one (the machine,
not the link, is the bound). Real peers sit behind links. ``LinkShaper(rate)`` gives every
port it is told about its own htb class at that rate, as if each server had its own uplink;
traffic from other ports (requests, everything else) is not shaped. Needs root (tc).
"""

from __future__ import annotations

import shutil
import subprocess

DEVICE = "lo"


class LinkShaper:
    """Given a tc rate (e.g. "1gbit"), shape the traffic sent from each port passed to limit()."""

    def __init__(self, rate: str):
        if shutil.which("tc") is None:
            raise SystemExit("--link-rate needs tc (Debian: apt-get install iproute2) and root")
        self.rate = rate
        self.ports: list[int] = []
        self._tc("qdisc", "add", "dev", DEVICE, "root", "handle", "1:", "htb", "default", "999")

    def limit(self, port: int) -> None:
        """Given a server's port, send what it sends through a link of its own at the rate."""
        self.ports.append(port)
        classid = f"1:{len(self.ports) + 10}"
        self._tc("class", "add", "dev", DEVICE, "parent", "1:", "classid", classid, "htb", "rate", self.rate,
                 "ceil", self.rate, "burst", "256k", "cburst", "256k", "quantum", "65536")  # fmt: skip
        self._tc("filter", "add", "dev", DEVICE, "protocol", "ip", "parent", "1:", "prio", "1", "u32",
                 "match", "ip", "sport", str(port), "0xffff", "flowid", classid)  # fmt: skip

    def close(self) -> None:
        """Remove every class and filter (loopback back as it was)."""
        subprocess.run(["tc", "qdisc", "del", "dev", DEVICE, "root"], capture_output=True, check=False)

    @staticmethod
    def _tc(*args: str) -> None:
        done = subprocess.run(["tc", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"tc {' '.join(args)} failed (root is needed): {done.stderr.strip()}")
