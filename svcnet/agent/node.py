"""The agent's Node: registration, status heartbeat and the node Lease, as the kubelet does them.

- Registration creates the Node (or adopts an existing one of the same name) with its addresses,
  capacity, node info and conditions, then waits for the control plane's node IPAM to give it a
  pod CIDR (`spec.podCIDR`).
- Every `heartbeat` seconds the Lease `kube-node-lease/<node>` is renewed; the Node's conditions
  are refreshed on every fifth beat or when they change (the kubelet's split between a cheap
  lease and a rarer status update).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import platform

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.client import Client

log = logging.getLogger("svcnet.agent.node")
NODE, LEASE = BY_KIND["Node"], BY_KIND["Lease"]
KUBELET_VERSION = "v1.32.4-svcnet"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _os_image() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _memory_ki() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def node_status(node_ip: str, hostname: str, max_pods: int, ready: bool = True,
                message: str = "svcnet agent is posting ready status") -> dict:
    now = _now()
    capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_ki()}Ki",
                "pods": str(max_pods), "ephemeral-storage": "0"}

    def cond(type_: str, status: str, reason: str, msg: str) -> dict:
        return {"type": type_, "status": status, "reason": reason, "message": msg,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    return {
        "addresses": [{"type": "InternalIP", "address": node_ip},
                      {"type": "Hostname", "address": hostname}],
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "svcnet agent has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "svcnet agent has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "svcnet agent has sufficient PID available"),
            cond("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady", message),
        ],
        "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                     "containerRuntimeVersion": "svcnet://0.1.0", "osImage": _os_image(),
                     "kernelVersion": platform.release(), "operatingSystem": "linux",
                     "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                                 platform.machine()),
                     "machineID": "", "systemUUID": "", "bootID": ""},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    }


def _merge_conditions(old: list[dict], new: list[dict]) -> list[dict]:
    """Keep lastTransitionTime when a condition's status did not change."""
    before = {c["type"]: c for c in old or []}
    out = []
    for c in new:
        prev = before.get(c["type"])
        if prev and prev.get("status") == c["status"]:
            c = dict(c, lastTransitionTime=prev.get("lastTransitionTime", c["lastTransitionTime"]))
        out.append(c)
    return out


class NodeAgent:
    def __init__(self, client: Client, name: str, node_ip: str, max_pods: int = 110,
                 heartbeat: float = 10.0):
        self.client = client
        self.name = name
        self.node_ip = node_ip
        self.max_pods = max_pods
        self.heartbeat = heartbeat
        self.node: dict | None = None
        self._task: asyncio.Task | None = None

    async def register(self) -> dict:
        """Create or adopt the Node and write its status; returns the Node."""
        status = node_status(self.node_ip, self.name, self.max_pods)
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name,
                             "labels": {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": status["nodeInfo"]["architecture"]}},
                "spec": {}, "status": status}
        while True:
            try:
                try:
                    node = await self.client.create(NODE, body, manager="svcnet-agent")
                except APIError as e:
                    if e.code != 409:
                        raise
                    node = await self.client.get(NODE, "", self.name)
                node = await self._write_status(node, status)
                self.node = node
                return node
            except APIError as e:
                log.warning("registering node %s: %s; retrying", self.name, e)
            except OSError as e:
                log.warning("registering node %s: API not reachable (%s); retrying", self.name, e)
            await asyncio.sleep(1)

    async def _write_status(self, node: dict, status: dict) -> dict:
        for _ in range(5):
            status = dict(status, conditions=_merge_conditions(
                (node.get("status") or {}).get("conditions"), status["conditions"]))
            node["status"] = status
            try:
                return await self.client.update_status(NODE, node, manager="svcnet-agent")
            except APIError as e:
                if e.code != 409:
                    raise
                node = await self.client.get(NODE, "", self.name)
        raise APIError(409, "Conflict", f"could not update node {self.name} status")

    async def wait_for_pod_cidr(self) -> str:
        while True:
            node = await self.client.get(NODE, "", self.name)
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:
                self.node = node
                return cidr
            await asyncio.sleep(0.2)

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def renew_lease(self) -> None:
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": _micro_now()}
        try:
            lease = await self.client.get(LEASE, "kube-node-lease", self.name)
            lease["spec"].update(spec)
            await self.client.update(LEASE, lease, manager="svcnet-agent")
        except APIError as e:
            if e.code != 404:
                raise
            owner = [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                      "uid": (self.node or {}).get("metadata", {}).get("uid", "")}]
            await self.client.create(LEASE, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease",
                             "ownerReferences": owner if owner[0]["uid"] else []},
                "spec": spec}, manager="svcnet-agent")

    async def _beat(self) -> None:
        n = 0
        while True:
            try:
                await self.renew_lease()
                if n % 5 == 0:
                    node = await self.client.get(NODE, "", self.name)
                    self.node = await self._write_status(
                        node, node_status(self.node_ip, self.name, self.max_pods))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the API may be restarting: keep beating
                log.warning("node heartbeat: %s", e)
            n += 1
            await asyncio.sleep(self.heartbeat)
