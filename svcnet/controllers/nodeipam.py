"""Node IPAM: give every Node a pod CIDR (a /24 of the cluster CIDR), as kube-controller-manager's
range allocator does.

The allocated set is what the Nodes themselves say (`spec.podCIDR(s)`), read through an
informer, so there is no separate state to lose: a restart re-reads it. A Node that already has
a pod CIDR keeps it (it is immutable once set). One controller instance assigns, one Node at a
time, so two Nodes never get the same range.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.client import Client, Informer

log = logging.getLogger("svcnet.nodeipam")
NODE = BY_KIND["Node"]


def next_pod_cidr(cluster_cidr: str, mask: int, used: set[str]) -> str | None:
    """The first /mask subnet of the cluster CIDR not in `used` (None when all are taken)."""
    net = ipaddress.ip_network(cluster_cidr, strict=False)
    taken = {ipaddress.ip_network(c, strict=False) for c in used}
    for sub in net.subnets(new_prefix=mask):
        if not any(sub.overlaps(t) for t in taken):
            return str(sub)
    return None


class NodeIPAMController:
    def __init__(self, client: Client, cluster_cidr: str = "10.244.0.0/16", mask: int = 24):
        self.client = client
        self.cluster_cidr = cluster_cidr
        self.mask = mask
        self.nodes = Informer(client, NODE)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.nodes.add_handler(self._on_node)
        self.nodes.start()
        self._task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        await self.nodes.stop()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_node(self, kind: str, old: dict | None, new: dict | None) -> None:
        if new is not None and not (new.get("spec") or {}).get("podCIDR"):
            self.queue.put_nowait(new["metadata"]["name"])

    def _used(self) -> set[str]:
        used: set[str] = set()
        for n in self.nodes.items():
            spec = n.get("spec") or {}
            used.update(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        return used

    async def _work(self) -> None:
        while True:
            name = await self.queue.get()
            node = self.nodes.get("", name)
            if node is None or (node.get("spec") or {}).get("podCIDR"):
                continue
            cidr = next_pod_cidr(self.cluster_cidr, self.mask, self._used())
            if cidr is None:
                log.error("no pod CIDR left in %s for node %s", self.cluster_cidr, name)
                continue
            try:
                updated = await self.client.patch(NODE, "", name,
                                                  {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
                                                  manager="node-ipam-controller")
                self.nodes.cache[f"/{name}"] = updated  # so the next pick sees it at once
                log.info("node %s: pod CIDR %s", name, cidr)
            except APIError as e:
                if e.code != 404:
                    log.warning("assigning a pod CIDR to %s: %s; retrying", name, e)
                    await asyncio.sleep(0.5)
                    self.queue.put_nowait(name)
