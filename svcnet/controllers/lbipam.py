"""LoadBalancer address management: the pure core of the LoadBalancer controller.

Theory of operation
-------------------
A LoadBalancer Service that svcnet owns (no `spec.loadBalancerClass`, or `svcnet.io/lb`, or
`svcnet.io/node-lb`; any other class belongs to someone else and is left alone) gets its
addresses in `status.loadBalancer.ingress` in one of two modes:

* Pool mode (`--lb-pool` given; class unset or `svcnet.io/lb`), as MetalLB allocates: one IPv4
  address from the pools, the lowest one that is free. A requested address
  (`spec.loadBalancerIP` or the annotation `svcnet.io/loadBalancerIPs`, not both) is honoured
  when it is in a pool and free, else the Service stays pending. An address is shared only when
  asked: every Service on it carries the annotation `svcnet.io/allow-shared-ip` with the same
  key, their ports (protocol/port) do not clash, and, for `externalTrafficPolicy: Local`, they
  select the same pods (MetalLB's "backend key"). A Service asking to share prefers an address
  already shared under its key.
* ServiceLB mode (no pools, or class `svcnet.io/node-lb`), as k3s ServiceLB: the ingress is the
  InternalIP of every Ready node. There are no hostPort pods, so there is nothing to schedule;
  the one rule left is theirs: a (protocol, port) can be exposed on the nodes by one such
  Service only, and a later Service that wants a port already taken stays pending; so does one
  that wants the API server's port (its endpoints in default/kubernetes), which it would
  otherwise capture.

State: the allocation table is the Services' own status, nothing else. `decide()` looks at one
Service and the `Claim`s of all the others (built from their status), so a restarted controller
rebuilds everything from one LIST, and what is in the store is never handed out twice. When
two Services claim the same address in a way that is not allowed (a sharing annotation removed,
a port changed to clash, a status written by hand), the older Service (creationTimestamp, then
namespace/name) keeps it and the other is re-decided; `decide()` therefore only lets the
Services that take precedence over this one block it from keeping what it holds, and every
holder blocks a new pick.

Every function here is pure: Services (dicts) in, `Decision` out. The controller does the I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

LB_CLASS = "svcnet.io/lb"            # the pools when there are any, else the nodes' addresses
NODE_LB_CLASS = "svcnet.io/node-lb"  # always the nodes' addresses (ServiceLB mode)
OWNED_CLASSES = (None, LB_CLASS, NODE_LB_CLASS)
ANNOTATION_IPS = "svcnet.io/loadBalancerIPs"
ANNOTATION_SHARED = "svcnet.io/allow-shared-ip"

POOL, NODE, FOREIGN = "pool", "node", "foreign"

# Event reasons (MetalLB's names).
ALLOCATED, FAILED = "IPAllocated", "AllocationFailed"


# ---- pools ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pool:
    """IPv4 address ranges, inclusive, in the order given. A CIDR counts every address in it
    (network and broadcast included, as MetalLB without avoidBuggyIPs)."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> "Pool":
        """`192.168.1.240-192.168.1.250`, `192.168.1.240/28` or one address, per item; raises
        ValueError saying what is wrong with the first bad item."""
        ranges: list[tuple[int, int]] = []
        for spec in specs:
            ranges.append(_parse_range(spec.strip()))
        for i, a in enumerate(ranges):
            for b in ranges[i + 1:]:
                if a[0] <= b[1] and b[0] <= a[1]:
                    raise ValueError(f"--lb-pool ranges overlap: {_fmt_range(a)} and {_fmt_range(b)}")
        return cls(tuple(ranges))

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __contains__(self, ip: str) -> bool:
        n = _ip_int(ip)
        return n is not None and any(lo <= n <= hi for lo, hi in self.ranges)

    def addresses(self) -> Iterable[str]:
        for lo, hi in self.ranges:
            for n in range(lo, hi + 1):
                yield str(ipaddress.IPv4Address(n))

    def size(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(_fmt_range(r) for r in self.ranges)


def _fmt_range(r: tuple[int, int]) -> str:
    lo, hi = (str(ipaddress.IPv4Address(n)) for n in r)
    return lo if lo == hi else f"{lo}-{hi}"


def _ip_int(ip: str) -> int | None:
    try:
        return int(ipaddress.IPv4Address(ip))
    except (ipaddress.AddressValueError, ValueError):
        return None


def _parse_range(spec: str) -> tuple[int, int]:
    try:
        if "-" in spec:
            first, _, last = spec.partition("-")
            lo, hi = ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())
            if hi < lo:
                raise ValueError(f"invalid --lb-pool range {spec!r}: {hi} is before {lo}")
            return int(lo), int(hi)
        net = ipaddress.IPv4Network(spec, strict=False)
        return int(net.network_address), int(net.broadcast_address)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError) as e:
        raise ValueError(f"invalid --lb-pool {spec!r}: want an IPv4 range A-B or a CIDR ({e})") from None


# ---- what a Service is and holds -------------------------------------------------------------

def _spec(svc: dict) -> dict:
    return svc.get("spec") or {}


def _annotations(svc: dict) -> dict:
    return (svc.get("metadata") or {}).get("annotations") or {}


def service_key(svc: dict) -> str:
    m = svc.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def ingress_ips(svc: dict) -> tuple[str, ...]:
    """The addresses in status.loadBalancer.ingress, in order."""
    lb = (svc.get("status") or {}).get("loadBalancer") or {}
    return tuple(i["ip"] for i in lb.get("ingress") or () if i.get("ip"))


def mode(svc: dict, pool: Pool) -> str | None:
    """POOL or NODE for a LoadBalancer Service svcnet owns, FOREIGN for one of another class,
    None for any other Service."""
    spec = _spec(svc)
    if spec.get("type") != "LoadBalancer":
        return None
    cls = spec.get("loadBalancerClass")
    if cls not in OWNED_CLASSES:
        return FOREIGN
    return POOL if pool and cls != NODE_LB_CLASS else NODE


def ports(svc: dict) -> frozenset[tuple[str, int]]:
    return frozenset((p.get("protocol") or "TCP", int(p.get("port") or 0))
                     for p in _spec(svc).get("ports") or ())


def sharing_key(svc: dict) -> str:
    return _annotations(svc).get(ANNOTATION_SHARED, "")


def backend_key(svc: dict) -> str:
    """MetalLB's backend key: with externalTrafficPolicy Local, Services can share an address
    only if they select the same pods (the address's node must have endpoints of both)."""
    spec = _spec(svc)
    if spec.get("externalTrafficPolicy") != "Local":
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))


@dataclass(frozen=True)
class Claim:
    """What one Service holds (its status) and the terms on which it holds it."""

    key: str
    order: tuple  # precedence: lower holds on to its addresses
    mode: str
    ips: tuple[str, ...]
    ports: frozenset[tuple[str, int]]
    sharing: str
    backend: str


def claim(svc: dict, pool: Pool) -> Claim | None:
    """The Claim of a LoadBalancer Service (None for any other Service)."""
    m = mode(svc, pool)
    if m is None:
        return None
    meta = svc.get("metadata") or {}
    key = service_key(svc)
    return Claim(key, (meta.get("creationTimestamp") or "", key), m, ingress_ips(svc),
                 ports(svc), sharing_key(svc), backend_key(svc))


# ---- decisions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """The ingress addresses a Service should have; empty means pending, and then `message`
    says why (for a Warning Event). `conflicts` are younger holders of what this Service keeps,
    which must be decided again (they lose it)."""

    ips: tuple[str, ...]
    message: str = ""
    conflicts: tuple[str, ...] = ()


def _fmt_port(p: tuple[str, int]) -> str:
    return f"{p[0]}/{p[1]}"


def _share_refusal(ip: str, me: Claim, other: Claim) -> str | None:
    """Why `me` may not hold `ip` beside `other` (None when it may): MetalLB's sharingOK and
    port check."""
    if not other.sharing:
        return f"address {ip} is in use by {other.key}, which does not allow sharing"
    if not me.sharing:
        return f"address {ip} is in use by {other.key} and this Service does not allow sharing"
    if me.sharing != other.sharing:
        return (f"address {ip} is in use by {other.key} with sharing key {other.sharing!r}, "
                f"not {me.sharing!r}")
    if me.backend != other.backend:
        return (f"address {ip} is in use by {other.key}, which selects other pods "
                "(externalTrafficPolicy Local shares an address only between Services with the "
                "same selector)")
    clash = sorted(me.ports & other.ports)
    if clash:
        return f"port {_fmt_port(clash[0])} is already in use on {ip} by {other.key}"
    return None


def requested_ip(svc: dict) -> tuple[str | None, str]:
    """(requested IPv4 address or None, error message or "")."""
    spec_ip = (_spec(svc).get("loadBalancerIP") or "").strip()
    ann = _annotations(svc).get(ANNOTATION_IPS)
    if ann is not None and spec_ip:
        return None, (f"the Service can not have both the {ANNOTATION_IPS} annotation and "
                      "spec.loadBalancerIP")
    items = [s.strip() for s in (ann.split(",") if ann is not None else [spec_ip]) if s.strip()]
    if not items:
        return None, ""
    where = f"annotation {ANNOTATION_IPS}" if ann is not None else "spec.loadBalancerIP"
    for s in items:
        try:
            addr = ipaddress.ip_address(s)
        except ValueError:
            return None, f"{where}: {s!r} is not a valid IP address"
        if addr.version != 4:
            return None, f"{where}: {s} is not IPv4 (svcnet's pools are IPv4 single stack)"
    if len(items) > 1:
        return None, f"{where}: more than one IPv4 address requested ({', '.join(items)})"
    return str(ipaddress.IPv4Address(items[0])), ""


def _pool_refusal(ip: str, me: Claim, others: list[Claim]) -> str | None:
    for o in others:
        if ip in o.ips:
            why = _share_refusal(ip, me, o)
            if why:
                return why
    return None


def decide(svc: dict, others: Iterable[Claim], pool: Pool, node_ips: Iterable[str],
           reserved: Mapping[tuple[str, int], str] | None = None) -> Decision:
    """The ingress `svc` should have, given the Claims of every other LoadBalancer Service.
    `svc` must be a Service svcnet owns (mode POOL or NODE). `reserved`: ports the nodes
    themselves serve on their addresses (the API server's), which ServiceLB mode must not
    take over, with what serves them."""
    me = claim(svc, pool)
    assert me is not None and me.mode in (POOL, NODE), "decide() is for Services svcnet owns"
    others = [o for o in others if o.key != me.key]
    older = [o for o in others if o.order < me.order]
    younger = [o for o in others if o.order > me.order]
    want, bad_request = requested_ip(svc)
    if bad_request:
        return Decision((), bad_request)
    if me.mode == NODE:
        return _decide_node(me, want, older, others, younger, sorted(node_ips, key=_ip_int),
                            reserved or {})
    return _decide_pool(me, want, pool, older, others, younger)


def _conflicts(me: Claim, ips: tuple[str, ...], younger: list[Claim], refusal) -> tuple[str, ...]:
    return tuple(o.key for o in younger if refusal(ips, me, o))


def _decide_pool(me: Claim, want: str | None, pool: Pool, older: list[Claim],
                 others: list[Claim], younger: list[Claim]) -> Decision:
    def refused(ips, me_, o):
        return any(ip in o.ips and _share_refusal(ip, me_, o) for ip in ips)

    held = next((ip for ip in me.ips if ip in pool), None)
    if want is not None:
        if want not in pool:
            return Decision((), f"requested address {want} is not in any --lb-pool range ({pool})")
        why = _pool_refusal(want, me, older if held == want else others)
        if why:
            return Decision((), f"requested address {want} is not available: {why}")
        return Decision((want,), conflicts=_conflicts(me, (want,), younger, refused))
    if held is not None and _pool_refusal(held, me, older) is None:
        return Decision((held,), conflicts=_conflicts(me, (held,), younger, refused))
    in_use = {ip for o in others for ip in o.ips}
    candidates = list(pool.addresses())
    if me.sharing:  # prefer an address already shared under this key
        shared = [ip for ip in candidates if ip in in_use and
                  any(o.sharing == me.sharing and ip in o.ips for o in others)]
        candidates = shared + [ip for ip in candidates if ip not in shared]
    for ip in candidates:
        if ip not in in_use or (me.sharing and _pool_refusal(ip, me, others) is None):
            return Decision((ip,))
    n = pool.size()
    return Decision((), f"no available IPs in --lb-pool {pool} ({n} address{'es' if n != 1 else ''}, "
                        "all in use)")


def _decide_node(me: Claim, want: str | None, older: list[Claim], others: list[Claim],
                 younger: list[Claim], node_ips: list[str],
                 reserved: Mapping[tuple[str, int], str]) -> Decision:
    if want is not None:
        return Decision((), f"requested address {want} cannot be given: without --lb-pool a "
                            "LoadBalancer gets the nodes' own addresses (ServiceLB mode)")
    if not node_ips:
        return Decision((), "no Ready node with an InternalIP address to expose the Service on")
    taken = sorted(p for p in me.ports if p in reserved)
    if taken:
        return Decision((), f"port {_fmt_port(taken[0])} is used on the nodes by "
                            f"{reserved[taken[0]]}")

    def clash(o: Claim) -> tuple[str, int] | None:
        if o.mode != NODE or not o.ips:
            return None
        common = sorted(me.ports & o.ports)
        return common[0] if common else None

    holding = bool(me.ips)
    for o in (older if holding else others):
        p = clash(o)
        if p is not None:
            return Decision((), f"port {_fmt_port(p)} is already in use on the nodes by "
                                f"LoadBalancer Service {o.key} (ServiceLB mode exposes each "
                                "port once)")
    return Decision(tuple(node_ips), conflicts=tuple(o.key for o in younger if clash(o)))


def api_server_ports(kubernetes_slice: dict | None, node_ips: Iterable[str]) -> dict[tuple[str, int], str]:
    """The ports of default/kubernetes's endpoints that are on a node address: the API server
    listens there, so a ServiceLB-mode Service must not take them over."""
    if not kubernetes_slice:
        return {}
    nodes = set(node_ips)
    on_node = any(a in nodes for ep in kubernetes_slice.get("endpoints") or ()
                  for a in ep.get("addresses") or ())
    if not on_node:
        return {}
    return {(p.get("protocol") or "TCP", int(p["port"])): "the API server (default/kubernetes)"
            for p in kubernetes_slice.get("ports") or () if p.get("port")}


def node_addresses(nodes: Iterable[dict]) -> list[str]:
    """The IPv4 InternalIP addresses of the Ready nodes, sorted."""
    out = set()
    for n in nodes:
        st = n.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in st.get("conditions") or ())
        if not ready:
            continue
        for a in st.get("addresses") or ():
            if a.get("type") == "InternalIP" and _ip_int(a.get("address", "")) is not None:
                out.add(a["address"])
    return sorted(out, key=_ip_int)
