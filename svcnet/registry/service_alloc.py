"""ClusterIP, NodePort and healthCheckNodePort allocation for Services.

Theory of operation
- Every allocated value is a key in the same store as the Services:
      /registry/allocations/clusterips/<ip>      -> {"service": "ns/name", "uid": "..."}
      /registry/allocations/nodeports/<port>     -> {"service": "ns/name", "uid": "..."}
  (the shape of KEP-1880's IPAddress objects). A create of such a key fails if it exists, so two
  Services can never hold one value, whatever the concurrency and however many API servers.
- The registry's write hooks add the allocation keys to the very transaction that writes the
  Service: allocation and the Service commit together or not at all, so a crash halfway through
  a create cannot leak or double-allocate. Updates allocate what the new spec needs and release
  what it no longer needs in the same transaction; deletes release everything.
- Dynamic picks use an in-memory view of the allocated keys (loaded at start, kept current by a
  watch) and the band split of allocator.py. A value is marked in the view as soon as a plan
  claims it, before its transaction commits: if the transaction then fails, the view holds a
  value the store does not (harmless: it is only not picked until the next repair pass reloads
  the view); a pick the view got wrong fails the transaction's create-if-absent instead of
  double-allocating.
- A repair loop (as kube-apiserver's) compares Services with allocation keys: a Service value
  without its key gets the key back (event ClusterIPNotAllocated / PortNotAllocated), a value
  held by two Services is reported (ClusterIPAlreadyAllocated / PortAlreadyAllocated), and a key
  no Service holds is released after it was seen leaked on `LEAK_PASSES` consecutive passes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from svcnet.api import errors
from svcnet.api.errors import FieldError, invalid_value
from svcnet.api.resources import Resource
from svcnet.registry.allocator import IPRange, PortRange, RangeFull
from svcnet.store.backend import Backend, Create, Delete, Op

log = logging.getLogger("svcnet.alloc")

IP_PREFIX = "/registry/allocations/clusterips/"
PORT_PREFIX = "/registry/allocations/nodeports/"
LEAK_PASSES = 3
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _owner(svc: dict) -> bytes:
    m = svc["metadata"]
    value = orjson.dumps({"service": f"{m.get('namespace', '')}/{m['name']}", "uid": m.get("uid", "")})
    return bytes(memoryview(value))  # exact size: stored values are cached (see store.encode)


def wanted_ips(svc: dict) -> list[str]:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    return [ip for ip in spec.get("clusterIPs") or [] if ip and ip != "None"]


def needs_node_ports(spec: dict) -> bool:
    t = spec.get("type")
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def needs_health_check_port(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def wanted_ports(svc: dict) -> list[int]:
    """Every node port the Service holds (nodePorts and healthCheckNodePort)."""
    spec = svc.get("spec") or {}
    out = []
    if spec.get("type") in NODE_PORT_TYPES:
        out = [p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")]
    if needs_health_check_port(spec) and spec.get("healthCheckNodePort"):
        out.append(spec["healthCheckNodePort"])
    return list(dict.fromkeys(out))


@dataclass
class _Plan:
    ops: list[Op]
    errs: list[FieldError]


class ServiceAllocator:
    def __init__(self, backend: Backend, ip_range: IPRange, port_range: PortRange):
        self.backend = backend
        self.ip_range = ip_range
        self.port_range = port_range
        self.ips: set[str] = set()
        self.ports: set[int] = set()
        self._leaks: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    # ---- the view of allocated values ------------------------------------------------------

    async def start(self) -> None:
        rev = await self.reload_view()
        self._task = asyncio.create_task(self._follow(rev))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _note(self, key: str, present: bool) -> None:
        if key.startswith(IP_PREFIX):
            (self.ips.add if present else self.ips.discard)(key[len(IP_PREFIX):])
        elif key.startswith(PORT_PREFIX):
            (self.ports.add if present else self.ports.discard)(int(key[len(PORT_PREFIX):]))

    async def _follow(self, rev: int) -> None:
        while True:
            try:
                async for ev in self.backend.watch("/registry/allocations/", rev):
                    rev = ev.kv.mod_revision
                    self._note(ev.kv.key, ev.type == "PUT")
            except asyncio.CancelledError:
                raise
            except Exception:  # compacted or overflowed: reload the whole view
                log.warning("allocation view lost its watch; reloading", exc_info=True)
                rev = await self.reload_view()

    async def reload_view(self) -> int:
        """Rebuild the view from the store; returns the revision it was read at."""
        ips: set[str] = set()
        ports: set[int] = set()
        rev = 0
        for prefix in (IP_PREFIX, PORT_PREFIX):
            page = await self.backend.list(prefix)
            rev = max(rev, page.revision)
            for kv in page.items:
                value = kv.key[len(prefix):]
                (ips.add(value) if prefix == IP_PREFIX else ports.add(int(value)))
        self.ips, self.ports = ips, ports
        return rev

    async def _holder(self, key: str) -> dict | None:
        kv = await self.backend.get(key)
        return orjson.loads(kv.value) if kv else None

    # ---- planning --------------------------------------------------------------------------

    async def _claim_ip(self, svc: dict, ip: str, plan: _Plan, taken_here: set[str]) -> None:
        ips = svc["spec"].get("clusterIPs") or [ip]
        if not self.ip_range.contains(ip):
            plan.errs.append(invalid_value(
                "spec.clusterIPs", ips,
                f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                f"The range of valid IPs is {self.ip_range.describe()}"))
            return
        holder = await self._holder(IP_PREFIX + ip)
        if holder is not None or ip in taken_here:
            if holder and holder.get("uid") == svc["metadata"].get("uid"):
                return
            plan.errs.append(invalid_value("spec.clusterIPs", ips,
                                           f"failed to allocate IP {ip}: provided IP is already allocated"))
            return
        taken_here.add(ip)
        self.ips.add(ip)
        plan.ops.append(Create(IP_PREFIX + ip, _owner(svc)))

    async def _claim_port(self, svc: dict, port: int, path: str, plan: _Plan, taken_here: set[int]) -> None:
        if not self.port_range.contains(port):
            plan.errs.append(invalid_value(
                path, port, "provided port is not in the valid range. The range of valid ports is "
                f"{self.port_range.describe()}"))
            return
        holder = await self._holder(PORT_PREFIX + str(port))
        if holder is not None and holder.get("uid") == svc["metadata"].get("uid"):
            return
        if holder is not None or port in taken_here:
            plan.errs.append(invalid_value(path, port, "provided port is already allocated"))
            return
        taken_here.add(port)
        self.ports.add(port)
        plan.ops.append(Create(PORT_PREFIX + str(port), _owner(svc)))

    def _pick_ip(self, taken_here: set[str]) -> str:
        ip = self.ip_range.pick(_Union(self.ips, taken_here))
        self.ips.add(ip)
        return ip

    def _pick_port(self, taken_here: set[int]) -> int:
        port = self.port_range.pick(_Union(self.ports, taken_here))
        self.ports.add(port)
        return port

    async def _allocate(self, svc: dict, old: dict | None) -> list[Op]:
        """Fill in and claim what `svc` needs; release what `old` held and `svc` does not."""
        spec = svc.setdefault("spec", {})
        if not spec.get("clusterIPs") and spec.get("clusterIP") not in (None, "", "None"):
            spec["clusterIPs"] = [spec["clusterIP"]]  # normalizeClusterIPs
        plan = _Plan([], [])
        old_ips = set(wanted_ips(old)) if old else set()
        old_ports = set(wanted_ports(old)) if old else set()
        ips_here: set[str] = set()
        ports_here: set[int] = set()
        try:
            # ClusterIPs
            if spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None":
                if not spec.get("clusterIPs") or not spec["clusterIPs"][0]:
                    ip = self._pick_ip(ips_here)
                    ips_here.add(ip)
                    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                    plan.ops.append(Create(IP_PREFIX + ip, _owner(svc)))
                else:
                    for ip in spec["clusterIPs"]:
                        if ip not in old_ips:
                            await self._claim_ip(svc, ip, plan, ips_here)
            # NodePorts: one per port number, shared across protocols within the Service
            if spec.get("type") in NODE_PORT_TYPES:
                by_number: dict[int, int] = {}
                for p in spec.get("ports") or []:
                    if p.get("nodePort"):
                        by_number.setdefault(p.get("port"), p["nodePort"])
                for i, p in enumerate(spec.get("ports") or []):
                    np = p.get("nodePort")
                    if np:
                        if np not in old_ports and np not in ports_here:
                            shared = by_number.get(p.get("port")) == np and any(
                                q.get("nodePort") == np for q in spec["ports"][:i])
                            if not shared:
                                await self._claim_port(svc, np, f"spec.ports[{i}].nodePort", plan,
                                                       ports_here)
                    elif needs_node_ports(spec):
                        np = by_number.get(p.get("port")) or self._pick_port(ports_here)
                        if np not in old_ports and np not in ports_here:
                            ports_here.add(np)
                            plan.ops.append(Create(PORT_PREFIX + str(np), _owner(svc)))
                        p["nodePort"] = by_number[p.get("port")] = np
            if needs_health_check_port(spec):
                hc = spec.get("healthCheckNodePort")
                if hc:
                    if hc not in old_ports:
                        await self._claim_port(svc, hc, "spec.healthCheckNodePort", plan, ports_here)
                else:
                    hc = self._pick_port(ports_here)
                    ports_here.add(hc)
                    spec["healthCheckNodePort"] = hc
                    plan.ops.append(Create(PORT_PREFIX + str(hc), _owner(svc)))
        except RangeFull:
            raise errors.APIError(500, "InternalError",
                                  "Internal error occurred: failed to allocate a serviceIP/nodePort: range is full",
                                  {"causes": [{"message": "range is full"}]}) from None
        if plan.errs:
            raise errors.invalid("Service", "", svc["metadata"].get("name", ""), plan.errs)
        if old is not None:
            plan.ops += await self._release(old, keep_ips=set(wanted_ips(svc)),
                                            keep_ports=set(wanted_ports(svc)))
        return plan.ops

    async def _release(self, svc: dict, keep_ips: set[str] = frozenset(),
                       keep_ports: set[int] = frozenset()) -> list[Op]:
        uid = svc["metadata"].get("uid")
        keys = [IP_PREFIX + ip for ip in wanted_ips(svc) if ip not in keep_ips]
        keys += [PORT_PREFIX + str(p) for p in wanted_ports(svc) if p not in keep_ports]
        ops: list[Op] = []
        for key in keys:
            kv = await self.backend.get(key)
            if kv is not None and orjson.loads(kv.value).get("uid") == uid:
                ops.append(Delete(key, kv.mod_revision))
        return ops

    # ---- registry hooks --------------------------------------------------------------------

    async def on_create(self, res: Resource, svc: dict) -> list[Op]:
        return await self._allocate(svc, None)

    async def on_update(self, res: Resource, new: dict, old: dict) -> list[Op]:
        return await self._allocate(new, old)

    async def on_delete(self, res: Resource, old: dict) -> list[Op]:
        return await self._release(old)

    def install(self, registry) -> None:
        hooks = registry.hooks_for("Service")
        hooks.on_create.append(self.on_create)
        hooks.on_update.append(self.on_update)
        hooks.on_delete.append(self.on_delete)

    # ---- repair ----------------------------------------------------------------------------

    async def repair(self, services: list[dict], record_event) -> None:
        """One repair pass over all Services (see the module docstring)."""
        await self.reload_view()
        holders: dict[str, dict] = {}
        for svc in services:
            for key in [IP_PREFIX + ip for ip in wanted_ips(svc)] + \
                       [PORT_PREFIX + str(p) for p in wanted_ports(svc)]:
                what = "ClusterIP" if key.startswith(IP_PREFIX) else "Port"
                value = key.rsplit("/", 1)[1]
                if key in holders:
                    other = holders[key]["metadata"]
                    await record_event(svc, f"{what}AlreadyAllocated",
                                       f"{what} {value} is also held by Service "
                                       f"{other.get('namespace')}/{other['name']}")
                    continue
                holders[key] = svc
                kv = await self.backend.get(key)
                if kv is None:
                    try:
                        await self.backend.txn([Create(key, _owner(svc))])
                    except Exception:
                        log.warning("repair could not restore %s", key, exc_info=True)
                        continue
                    await record_event(svc, f"{what}NotAllocated",
                                       f"{what} {value} was not allocated; repairing")
                elif orjson.loads(kv.value).get("uid") != svc["metadata"].get("uid"):
                    await record_event(svc, f"{what}AlreadyAllocated",
                                       f"{what} {value} is allocated to another service")
        leaked_now: dict[str, int] = {}
        for prefix in (IP_PREFIX, PORT_PREFIX):
            for kv in (await self.backend.list(prefix)).items:
                if kv.key in holders:
                    continue
                seen = self._leaks.get(kv.key, 0) + 1
                if seen >= LEAK_PASSES:
                    try:
                        await self.backend.txn([Delete(kv.key, kv.mod_revision)])
                        log.info("repair released leaked allocation %s", kv.key)
                    except Exception:
                        leaked_now[kv.key] = seen
                else:
                    leaked_now[kv.key] = seen
        self._leaks = leaked_now


class _Union:
    """Membership in either of two sets, without copying them."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __contains__(self, item) -> bool:
        return item in self.a or item in self.b
