"""Pod IP address management for one node: addresses from the node's pod CIDR.

Theory of operation
- The node's pod CIDR (a /24 given by the control plane) is split as: the network address and
  broadcast address are never used, the first address is the bridge gateway, the rest go to
  pods, lowest free first.
- Allocations are keyed by pod UID and persisted in one JSON file, rewritten atomically
  (write + fsync + rename) BEFORE an address is used, so a crash can at worst leak an address
  (reclaimed by `retain()` when the agent re-syncs with the API), never hand one out twice.
- `retain(uids)` releases every allocation whose pod is gone: the agent calls it after it has
  listed the pods bound to this node.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path


class PodCIDRExhausted(Exception):
    pass


class IPAM:
    def __init__(self, pod_cidr: str, state_file: Path):
        self.net = ipaddress.ip_network(pod_cidr, strict=False)
        self.state_file = state_file
        self.by_uid: dict[str, str] = {}
        if state_file.exists():
            data = json.loads(state_file.read_text() or "{}")
            if data.get("cidr") == str(self.net):
                self.by_uid = dict(data.get("allocations", {}))

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    @property
    def prefix_len(self) -> int:
        return self.net.prefixlen

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump({"cidr": str(self.net), "allocations": self.by_uid}, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    def allocate(self, uid: str) -> str:
        """The pod's address: the one it already has, else the lowest free one (persisted)."""
        if uid in self.by_uid:
            return self.by_uid[uid]
        used = set(self.by_uid.values()) | {self.gateway}
        for host in self.net.hosts():
            ip = str(host)
            if ip not in used:
                self.by_uid[uid] = ip
                self._save()
                return ip
        raise PodCIDRExhausted(f"no free address in pod CIDR {self.net}")

    def release(self, uid: str) -> None:
        if self.by_uid.pop(uid, None) is not None:
            self._save()

    def retain(self, uids: set[str]) -> list[str]:
        """Release the allocations of pods not in `uids`; returns the released UIDs."""
        gone = [u for u in self.by_uid if u not in uids]
        for u in gone:
            del self.by_uid[u]
        if gone:
            self._save()
        return gone
