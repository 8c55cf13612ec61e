"""The LoadBalancer announcer: this node answers ARP for the LoadBalancer addresses it serves.

Theory of operation
-------------------
MetalLB's layer-2 mode in its simplest form. The addresses to announce are a pure function of
the Services and their EndpointSlices (`announced_addresses`): the IPv4
`status.loadBalancer.ingress` addresses of the LoadBalancer Services svcnet owns (no class,
`svcnet.io/lb`), minus the node's own addresses (ServiceLB mode hands those out, and they
answer already). One node announces each address, elected as MetalLB's layer-2 mode elects
it (`elected`: a hash of node name and address over the candidate nodes, so every node agrees
without talking): the candidates are the Ready nodes, and with `externalTrafficPolicy: Local`
only those with a ready endpoint of the Service (a node that would drop the traffic does not
attract it). `externalIPs` are never announced: routing them to a node is the user's business,
as in Kubernetes.

Announcing = holding each address as a /32 on a dummy link `svcnet-lb0` that the agent owns in
its network namespace (an empty bridge where the kernel lacks the dummy driver). The kernel
then answers ARP for it on the LAN interface (arp_ignore 0, the default) and the service
proxy's nftables rules DNAT the traffic to the endpoints before it reaches any local socket. An address that is no longer wanted is deleted from the link; after
adding one, a gratuitous ARP (an ARP announcement) goes out of the interface holding the node
IP so that neighbours that cached another owner update at once.

`reconcile(current, desired)` is the pure diff; `DummyLink` is the I/O (`ip` commands); the
`Announcer` wakes on Service changes from the proxier's informer. The agent leaves the link in
place when it stops (traffic keeps flowing; the next agent reconciles it); `svcnet down`
deletes the link.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import socket
import subprocess
from typing import Iterable, Mapping

from svcnet.api.resources import BY_KIND
from svcnet.client import Informer
from svcnet.controllers.lbipam import NODE_LB_CLASS, OWNED_CLASSES, ingress_ips, node_addresses

log = logging.getLogger("svcnet.announce")

LINK = "svcnet-lb0"


def _ipv4(s: str) -> bool:
    try:
        ipaddress.IPv4Address(s)
        return True
    except ValueError:
        return False


def elected(ip: str, candidates: Iterable[str]) -> str | None:
    """MetalLB's layer-2 election: of the candidate nodes, the one whose sha256(node#ip) sorts
    first announces `ip`. Every node computes the same answer from the same inputs, and an
    address moves only when its winner goes."""
    return min(candidates, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest(), default=None)


def _ready_endpoint_nodes(slices: Iterable[dict]) -> set[str]:
    return {ep["nodeName"] for s in slices for ep in s.get("endpoints") or ()
            if ep.get("nodeName") and (ep.get("conditions") or {}).get("ready") is not False}


def announced_addresses(services: Iterable[dict], node_name: str, node_ips: Iterable[str],
                        slices_by_service: Mapping[tuple[str, str], Mapping[str, dict]],
                        ready_nodes: Iterable[str] = ()) -> set[str]:
    """The LoadBalancer addresses this node should answer ARP for. The candidates for an
    address are the Ready nodes (this node always counts: it is running), and with
    externalTrafficPolicy Local only those with a ready endpoint of the Service."""
    own = set(node_ips)
    nodes = set(ready_nodes) | {node_name}
    out: set[str] = set()
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        cls = spec.get("loadBalancerClass")
        if cls not in OWNED_CLASSES or cls == NODE_LB_CLASS:
            continue
        candidates = nodes
        if spec.get("externalTrafficPolicy") == "Local":
            m = svc["metadata"]
            slices = (slices_by_service.get((m.get("namespace", ""), m["name"])) or {}).values()
            candidates = nodes & _ready_endpoint_nodes(slices)
        out.update(ip for ip in ingress_ips(svc)
                   if _ipv4(ip) and ip not in own and elected(ip, candidates) == node_name)
    return out


def reconcile(current: set[str], desired: set[str]) -> tuple[list[str], list[str]]:
    """(addresses to add, addresses to delete), sorted."""
    key = ipaddress.IPv4Address
    return sorted(desired - current, key=key), sorted(current - desired, key=key)


# ---- I/O ----------------------------------------------------------------------------------------

def _ip(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, input=input, timeout=10)


class DummyLink:
    """The dummy link holding the announced addresses, in this network namespace (or in the
    named one, for tests)."""

    def __init__(self, name: str = LINK, netns: str | None = None):
        self.name = name
        self._ns = ("-n", netns) if netns else ()

    def _ip(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return _ip(*self._ns, *args, input=input)

    def ensure(self) -> None:
        """Create the link (a dummy; an empty bridge where the kernel has no dummy driver: both
        hold local addresses without carrying traffic) and set it up."""
        if self._ip("link", "show", "dev", self.name).returncode != 0:
            for kind in ("dummy", "bridge"):
                r = self._ip("link", "add", self.name, "type", kind)
                if r.returncode == 0 or "File exists" in r.stderr:
                    break
            else:
                raise OSError(f"creating {self.name}: {r.stderr.strip()}")
        r = self._ip("link", "set", self.name, "up")
        if r.returncode != 0:
            raise OSError(f"setting {self.name} up: {r.stderr.strip()}")

    def addresses(self) -> set[str]:
        r = self._ip("-j", "-4", "addr", "show", "dev", self.name)
        if r.returncode != 0 or not r.stdout.strip():
            return set()
        return {a["local"] for link in json.loads(r.stdout) for a in link.get("addr_info", ())
                if a.get("family") == "inet"}

    def apply(self, add: list[str], delete: list[str]) -> None:
        """All changes in one `ip -batch`; -force goes on past a failed line, so one address
        that is already there (or gone) does not stop the others."""
        lines = [f"addr del {ip}/32 dev {self.name}" for ip in delete]
        lines += [f"addr add {ip}/32 dev {self.name}" for ip in add]
        if not lines:
            return
        r = self._ip("-force", "-batch", "-", input="\n".join(lines) + "\n")
        if r.returncode != 0:
            log.warning("updating %s: %s", self.name, r.stderr.strip())

    def delete(self) -> bool:
        return self._ip("link", "del", self.name).returncode == 0


def gratuitous_arp_frame(mac: bytes, ip: str) -> bytes:
    """An ARP announcement (RFC 5227): a broadcast request "who has ip? tell ip at mac" with
    sender and target address both `ip`. Neighbours that hold an entry for `ip` take the new
    MAC at once (Linux counts it as gratuitous ARP, which overrides the entry's lock time)."""
    addr = socket.inet_aton(ip)
    eth = b"\xff" * 6 + mac + b"\x08\x06"
    arp = b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + addr + b"\x00" * 6 + addr
    return eth + arp


def send_gratuitous_arp(node_ip: str, ips: list[str]) -> None:
    """Best effort: from the interface that holds `node_ip`."""
    r = _ip("-j", "-4", "addr", "show")
    try:
        links = json.loads(r.stdout) if r.returncode == 0 else []
    except ValueError:
        return
    dev = next((link["ifname"] for link in links
                if any(a.get("local") == node_ip for a in link.get("addr_info", ()))), None)
    if dev is None:
        return
    r = _ip("-j", "link", "show", "dev", dev)  # (`addr show -4` leaves the MAC out)
    try:
        mac = bytes.fromhex(json.loads(r.stdout)[0]["address"].replace(":", ""))
    except (ValueError, LookupError):
        return
    try:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((dev, 0))
            for ip in ips:
                s.send(gratuitous_arp_frame(mac, ip))
    except OSError as e:
        log.debug("gratuitous ARP on %s: %s", dev, e)


def _is_lb(svc: dict | None) -> bool:
    return svc is not None and (svc.get("spec") or {}).get("type") == "LoadBalancer"


class Announcer:
    """Keeps `svcnet-lb0` holding what `announced_addresses` says, following the proxier's
    Service and EndpointSlice informers."""

    def __init__(self, proxier, node_name: str, node_ips: tuple[str, ...],
                 link: DummyLink | None = None):
        self.proxier = proxier
        self.node_name = node_name
        self.node_ips = node_ips
        self.link = link or DummyLink()
        self.nodes = Informer(proxier.client, BY_KIND["Node"])
        self.wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _on_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        if _is_lb(old) or _is_lb(new):
            self.wake.set()

    def _on_slice(self, kind: str, old: dict | None, new: dict | None) -> None:
        m = (new or old)["metadata"]
        name = (m.get("labels") or {}).get("kubernetes.io/service-name")
        svc = self.proxier.services.get(m.get("namespace", ""), name) if name else None
        if _is_lb(svc) and svc["spec"].get("externalTrafficPolicy") == "Local":
            self.wake.set()

    def _on_node(self, kind: str, old: dict | None, new: dict | None) -> None:
        if bool(node_addresses([old] if old else [])) != bool(node_addresses([new] if new else [])):
            self.wake.set()  # a node became Ready or stopped being Ready

    def ready_nodes(self) -> set[str]:
        return {n["metadata"]["name"] for n in self.nodes.items() if node_addresses([n])}

    def _informers(self):
        return ((self.proxier.services, self._on_service), (self.proxier.slices, self._on_slice),
                (self.nodes, self._on_node))

    async def start(self) -> None:
        for inf, handler in self._informers():
            inf.add_handler(handler)
        self.nodes.start()
        await self.nodes.synced.wait()
        self.wake.set()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        for inf, handler in self._informers():
            try:
                inf.handlers.remove(handler)
            except ValueError:
                pass
        await self.nodes.stop()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sync(self) -> tuple[list[str], list[str]]:
        desired = announced_addresses(self.proxier.services.items(), self.node_name,
                                      self.node_ips, self.proxier.slices_by_service,
                                      self.ready_nodes())
        add, delete = reconcile(await asyncio.to_thread(self.link.addresses), desired)
        if add:  # the link is made when first needed
            await asyncio.to_thread(self.link.ensure)
        if add or delete:
            await asyncio.to_thread(self.link.apply, add, delete)
            log.info("LoadBalancer addresses announced: %d (added %s, withdrawn %s)", len(desired),
                     ", ".join(add) or "none", ", ".join(delete) or "none")
        if add:
            await asyncio.to_thread(send_gratuitous_arp, self.node_ips[0], add)
        return add, delete

    async def _loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - retried on the next change or in 2s
                log.warning("announcing LoadBalancer addresses failed: %s; retrying", e)
                await asyncio.sleep(2)
                self.wake.set()
