"""What this network namespace's addresses are (read-only; reads /proc and `ip -j`)."""

from __future__ import annotations

import json
import subprocess


def _ip_json(*args: str) -> list[dict]:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0 or not out.stdout.strip():
        return []
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return []


def _default_route_device() -> str | None:
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return None


def local_ipv4_addresses(device: str | None = None) -> list[str]:
    """Global-scope IPv4 addresses (of `device`, or of every interface)."""
    args = ["-4", "addr", "show"] + (["dev", device] if device else [])
    out = []
    for link in _ip_json(*args):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a.get("scope") == "global":
                out.append(a["local"])
    return out


def default_node_ip() -> str | None:
    """The default route's interface address, else the first global IPv4 address."""
    dev = _default_route_device()
    if dev:
        addrs = local_ipv4_addresses(dev)
        if addrs:
            return addrs[0]
    addrs = local_ipv4_addresses()
    return addrs[0] if addrs else None
