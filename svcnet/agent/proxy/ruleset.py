"""The service proxy's nftables ruleset: (Services, EndpointSlices, node) -> State -> Transaction.

Theory of operation
===================

Everything lives in one table, `ip svcnet` (IPv4 single stack). On the common path the table
has a constant number of chains: a service or an endpoint is never a chain, it is map and set
elements, so the first packet of a connection costs a few hash lookups however many Services
exist, and a change to one Service is a handful of element updates. Only Services with
sessionAffinity ClientIP get chains (two or three per port) and sets (one per endpoint) of
their own, as in kube-proxy: the per-client memory lives in per-endpoint dynamic sets.

Dispatch addresses of a service port, and the traffic policy that applies:
- ClusterIPs: internal traffic; internalTrafficPolicy Local uses this node's endpoints only.
- externalIPs, and for type LoadBalancer the status.loadBalancer.ingress IPs (ipMode VIP; they
  may be the node's own addresses, as in ServiceLB mode): external traffic.
- nodePorts of NodePort and LoadBalancer Services, on every local address but loopback
  (CVE-2020-8558: no route_localnet) and the LB addresses: external traffic.
External traffic with externalTrafficPolicy Cluster goes to any endpoint and is masqueraded;
with Local it goes to this node's endpoints only, keeps the client's address, and is dropped
when there is none here; but pods and the node itself reaching an external address are cluster
traffic (any endpoint; the node masqueraded), as kube-proxy's short-circuit rules do.

An LB address that is not one of the node's own may be local here: the announcer holds it on
svcnet-lb0 so that the node answers ARP for it. Like a cloud load balancer (and kube-proxy's
IPVS mode, which also binds VIPs locally) it exposes exactly its Service ports: the NodePort
rules skip the set `load-balancer-ips`, and a new connection to one of its addresses (TCP, UDP,
anything but ICMP: ping still answers) that no dispatch rule took is rejected in filter-input
before it reaches a local socket (the API server on :6443, sshd, ...). The set holds the IPv4
ingress addresses of every LoadBalancer Service, whatever their ipMode, minus the node's own
(ServiceLB mode: that address keeps its sockets and NodePorts); it matters only where an
address is local.

Packet path (priorities are numeric because nft 1.0.6 rejects `dstnat` for the output hook in
some contexts: filter = 0, dstnat = -100, srcnat = 100):

    nat-prerouting (prerouting, -100) --+
    nat-output     (output,     -100) --+-> services:
        ip saddr != <clusterCIDR> ip daddr @cluster-ips  mark 0x4000      off-cluster -> ClusterIP
        ip daddr . meta l4proto . th dport  vmap @service-ips             -> goto <chain>
        fib daddr type local ip daddr != 127.0.0.0/8 ip daddr != @load-balancer-ips
                 meta l4proto . th dport  vmap @service-nodeports         -> goto <chain>
    shared endpoint chains, <p> = tcp|udp, N = endpoints to pick from:
    ep-<p>-N:  dnat to (ip daddr . <p> dport . numgen random mod N) map @endpoints-<p>
    xp-<p>-N:  mark 0x4000; the same dnat                                 external IP, eTP Cluster
    np-<p>-N:  mark 0x4000; dnat to (<p> dport . numgen random mod N) map @nodeport-endpoints-<p>
    nc-<p>-N:  the same without the mark                       (pods to an eTP Local NodePort)
    xl-<p>-N:  external IP, eTP Local, N local endpoints:
        ip saddr <clusterCIDR>  ip daddr . meta l4proto . th dport vmap @external-cluster
        fib saddr type local  mark 0x4000  (the same vmap)                 -> goto ep-<p>-<all>
        dnat to (ip daddr . <p> dport . numgen random mod N) map @local-endpoints-<p>
    nl-<p>-N:  the same for NodePorts (@nodeport-cluster -> nc-<p>-<all>,
               @nodeport-local-endpoints-<p>)
    (an xl/nl chain for N = 0 has no dnat rule: the packet leaves unDNATed and the filter
    chains drop it)
    aff-<id>-cluster / -local / -external: a Service port with affinity; per endpoint E a
    dynamic set aff-<id>-<ip>-<port> of clients (timeout = timeoutSeconds):
        ip saddr @aff-<id>-E  update @aff-<id>-E { ip saddr }  dnat to E   (remembered, each E)
        numgen random mod N-k == 0  update @aff-<id>-E_k ...  dnat to E_k  (k = 0..N-2: uniform)
        update @aff-<id>-E_N-1 { ip saddr }  dnat to E_N-1
        -external: eTP Cluster: mark, goto -cluster; Local: the pod/node short-circuit to
                   -cluster, else goto -local
    nat-postrouting (postrouting, 100) -> masquerading:
        ct status dnat ip saddr . ip daddr @hairpin  mark 0x4000          a pod reaching itself
        mark & 0x4000 == 0 return;  clear the mark;  masquerade fully-random
    filter-prerouting (prerouting, -110), filter-output (output, -110):
        ct state new -> firewall-check:
        ip daddr . meta l4proto . th dport @firewall-ips
            ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow  drop
    filter-input   (input,   -110): ct state new -> nodeport-endpoints-check, service-endpoints-check,
        ip daddr @load-balancer-ips meta l4proto != icmp reject          (not a Service port)
    filter-forward (forward, -110): ct state new -> service-endpoints-check, cluster-ips-check
    filter-output  (output,  -110): ct state new -> service-endpoints-check
    filter-output-post-dnat (output, -90): ct state new -> cluster-ips-check
    service-endpoints-check:  ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    nodeport-endpoints-check: ip daddr != 127.0.0.0/8 ip daddr != @load-balancer-ips
                              meta l4proto . th dport vmap @no-endpoint-nodeports  (input: local)
    cluster-ips-check: ip daddr @cluster-ips reject (live ClusterIP, unknown port);
                       ip daddr <serviceCIDR> drop  (unallocated service IP)
    reject-chain: reject

On input and forward the filter chains see a service destination only if nat did not rewrite
it, so a `no-endpoint-*` entry acts exactly on traffic that no dispatch rule took: "goto
reject-chain" when the port has no endpoints at all, "drop" when a Local policy finds none on
this node (pods still reach an eTP Local external address through the short-circuit); only
then does the load-balancer-ips rule reject what is left for an LB address, so an eTP Local
port without a local endpoint keeps dropping. On output, filter-output runs before nat-output,
so the node's own traffic to such an address is dropped too, as with kube-proxy; its traffic to
an LB address's other ports comes back through input over loopback and is rejected there.
Stale UDP conntrack entries are conntrack.py's business.
loadBalancerSourceRanges apply to LB ingress addresses only (not to NodePorts or externalIPs,
as in Kubernetes); `firewall-allow` is an interval set of (address, proto, port, source
prefix), so a change of ranges is a few element updates.

Invariants
----------
- The skeleton (base chains, fixed chains, maps, sets and their rules) depends only on the
  node's cluster and service CIDRs. Everything else is `State.elements`, the endpoint chains
  and affinity chains `State.chains`, and the affinity sets `State.sets`. Shared endpoint
  chains' rules are a function of their name; affinity chains and sets are named by a hash of
  (namespace, name, protocol, port, timeout) (and, for sets, the endpoint).
- A dispatch address with endpoints has its N endpoints at indices 0..N-1 of its endpoint map,
  in sorted (ip, port) order, and its dispatch element points at the chain for count N, which
  draws `numgen random mod N`: each endpoint equally likely. Indices are ranks, so State is a
  pure function of its inputs (removing an endpoint shifts the ones after it; all of it is one
  transaction).
- A ClusterIP port's key is in exactly one of service-ips / no-endpoint-services. An external
  address or NodePort with endpoints somewhere but none here under eTP Local is in both (the
  dispatch element carries the pod/node short-circuit, the filter drops the rest).
- Every `goto` in a map element or rule names a chain in the State; every chain in the State
  is used by some element or rule.
- `load-balancer-ips` is the IPv4 ingress addresses of the LoadBalancer Services minus
  `NodeInfo.node_ips`: an address comes and goes by one element update.
- full_transaction(new) and old + partial_transaction(old, new) leave identical tables.

Endpoint maps are per transport protocol (`endpoints-tcp`, `endpoints-udp`, ...), not one map
keyed by `meta l4proto`: nft 1.0.6 fails with "conflicting protocols specified: ip vs. th" when
a later transaction adds a rule using (or re-declares) a map whose typeof value is
`ip daddr . th dport`, and a value typed `tcp dport` makes nft add a `meta l4proto tcp` check to
the dnat rule, which is right only in a TCP-only chain. With one map per protocol a partial sync
can create a chain for a new endpoint count.

Syncs: a full sync is `add table; delete table; add table` followed by the whole definition, in
one transaction, so the kernel swaps the old table for the new one atomically; the affinity
sets' elements (which only the kernel writes) are read before and written back with their
remaining time. A partial sync adds/deletes elements (a changed value is delete +
add), adds/flushes/deletes chains and adds/deletes affinity sets (`Changes` orders them).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import itertools
import socket
from dataclasses import dataclass, field
from typing import NamedTuple

from svcnet.agent.proxy.nft import Chain, Elements, Map, Rule, Set, Table, Transaction

MASQUERADE_MARK = "0x4000"  # kube-proxy's masqueradeBit 14
MARK_MASQ = f"meta mark set meta mark or {MASQUERADE_MARK}"

# Service port protocol -> nft transport protocol keyword. SCTP ports get no rules yet: adding
# it is one entry here once it has been tried against the kernel's SCTP conntrack/NAT.
PROTOCOLS = {"TCP": "tcp", "UDP": "udp"}

NODEPORT_TYPES = frozenset({"NodePort", "LoadBalancer"})
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for ClientIP

BASE_CHAINS = (
    Chain("filter-prerouting", "filter", "prerouting", -110),
    Chain("filter-input", "filter", "input", -110),
    Chain("filter-forward", "filter", "forward", -110),
    Chain("filter-output", "filter", "output", -110),
    Chain("filter-output-post-dnat", "filter", "output", -90),
    Chain("nat-prerouting", "nat", "prerouting", -100),
    Chain("nat-output", "nat", "output", -100),
    Chain("nat-postrouting", "nat", "postrouting", 100),
)

# (chain, rule); {cluster_cidr} and {service_cidr} come from the node.
SKELETON_RULES = (
    ("filter-prerouting", "ct state new jump firewall-check"),
    ("filter-input", "ct state new jump nodeport-endpoints-check"),
    ("filter-input", "ct state new jump service-endpoints-check"),
    ("filter-input", "ct state new ip daddr @load-balancer-ips meta l4proto != icmp reject"),
    ("filter-forward", "ct state new jump service-endpoints-check"),
    ("filter-forward", "ct state new jump cluster-ips-check"),
    ("filter-output", "ct state new jump service-endpoints-check"),
    ("filter-output", "ct state new jump firewall-check"),
    ("filter-output-post-dnat", "ct state new jump cluster-ips-check"),
    ("nat-prerouting", "jump services"),
    ("nat-output", "jump services"),
    ("nat-postrouting", "jump masquerading"),
    ("services", "ip saddr != {cluster_cidr} ip daddr @cluster-ips " + MARK_MASQ),
    ("services", "ip daddr . meta l4proto . th dport vmap @service-ips"),
    ("services", "fib daddr type local ip daddr != 127.0.0.0/8 ip daddr != @load-balancer-ips"
                 " meta l4proto . th dport vmap @service-nodeports"),
    ("masquerading", "ct status dnat ip saddr . ip daddr @hairpin " + MARK_MASQ),
    ("masquerading", f"meta mark & {MASQUERADE_MARK} == 0 return"),
    ("masquerading", f"meta mark set meta mark xor {MASQUERADE_MARK}"),
    ("masquerading", "masquerade fully-random"),
    ("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services"),
    ("nodeport-endpoints-check", "ip daddr != 127.0.0.0/8 ip daddr != @load-balancer-ips"
                                 " meta l4proto . th dport vmap @no-endpoint-nodeports"),
    ("firewall-check", "ip daddr . meta l4proto . th dport @firewall-ips"
                       " ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow drop"),
    ("cluster-ips-check", "ip daddr @cluster-ips reject"),
    ("cluster-ips-check", "ip daddr {service_cidr} drop"),
    ("reject-chain", "reject"),
)

_BASE_NAMES = {c.name for c in BASE_CHAINS}
FIXED_CHAINS = tuple(dict.fromkeys(c for c, _ in SKELETON_RULES if c not in _BASE_NAMES))

CONTAINERS = (
    Map("service-ips", type="ipv4_addr . inet_proto . inet_service : verdict"),
    Map("service-nodeports", type="inet_proto . inet_service : verdict"),
    Map("external-cluster", type="ipv4_addr . inet_proto . inet_service : verdict"),
    Map("nodeport-cluster", type="inet_proto . inet_service : verdict"),
    Map("no-endpoint-services", type="ipv4_addr . inet_proto . inet_service : verdict"),
    Map("no-endpoint-nodeports", type="inet_proto . inet_service : verdict"),
    Set("cluster-ips", type="ipv4_addr"),
    Set("load-balancer-ips", type="ipv4_addr"),
    Set("hairpin", type="ipv4_addr . ipv4_addr"),
    Set("firewall-ips", type="ipv4_addr . inet_proto . inet_service"),
    Set("firewall-allow", type="ipv4_addr . inet_proto . inet_service . ipv4_addr", flags="interval"),
) + tuple(m for p in PROTOCOLS.values() for m in (
    Map(f"endpoints-{p}", typeof=f"ip daddr . {p} dport . numgen random mod 1 : ip daddr . {p} dport"),
    Map(f"local-endpoints-{p}", typeof=f"ip daddr . {p} dport . numgen random mod 1 : ip daddr . {p} dport"),
    Map(f"nodeport-endpoints-{p}", typeof=f"{p} dport . numgen random mod 1 : ip daddr . {p} dport"),
    Map(f"nodeport-local-endpoints-{p}", typeof=f"{p} dport . numgen random mod 1 : ip daddr . {p} dport"),
))
CONTAINER_NAMES = tuple(c.name for c in CONTAINERS)

_EP = "dnat ip to ip daddr . {p} dport . numgen random mod {n} map @endpoints-{p}"
_NP = "dnat ip to {p} dport . numgen random mod {n} map @nodeport-endpoints-{p}"
_POD = "ip saddr {cluster_cidr} "
_NODE = f"fib saddr type local {MARK_MASQ} "
_EXT_CLUSTER = "ip daddr . meta l4proto . th dport vmap @external-cluster"
_NP_CLUSTER = "meta l4proto . th dport vmap @nodeport-cluster"

# Endpoint chains, one per (kind, protocol, endpoint count) in use: kind -> rules. Counts are of
# the endpoints the chain picks from; for the Local kinds that is the local endpoints, and a
# rule whose count would be 0 is left out (the packet falls through, undNATed, to the filter
# chains' drop).
ENDPOINT_CHAINS = {
    # cluster traffic to a ClusterIP (and short-circuited pod/node traffic to an external IP)
    "ep": (_EP,),
    # external IP / LoadBalancer IP, externalTrafficPolicy Cluster: masquerade
    "xp": (MARK_MASQ, _EP),
    # NodePort, externalTrafficPolicy Cluster: masquerade
    "np": (MARK_MASQ, _NP),
    # NodePort reached by a pod of a Service with externalTrafficPolicy Local
    "nc": (_NP,),
    # external IP / LoadBalancer IP, externalTrafficPolicy Local: pods and the node itself get
    # cluster endpoints (the node masqueraded), everyone else local endpoints, not masqueraded
    "xl": (_POD + _EXT_CLUSTER, _NODE + _EXT_CLUSTER,
           "dnat ip to ip daddr . {p} dport . numgen random mod {n} map @local-endpoints-{p}"),
    # NodePort, externalTrafficPolicy Local: the same split
    "nl": (_POD + _NP_CLUSTER, _NODE + _NP_CLUSTER,
           "dnat ip to {p} dport . numgen random mod {n} map @nodeport-local-endpoints-{p}"),
}


@functools.lru_cache(maxsize=4096)
def _endpoint_chain(kind: str, p: str, n: int, cluster_cidr: str) -> tuple[str, tuple[str, ...]]:
    """The name and rules of the shared endpoint chain of `kind` for protocol `p` and `n`
    endpoints. Cached across renders: the pieces that partial syncs diff against are one
    desired() per Service, and each asks for its chain again."""
    rules = ENDPOINT_CHAINS[kind]
    if kind in ("xl", "nl") and n == 0:
        rules = rules[:-1]
    return f"{kind}-{p}-{n}", tuple(r.format(p=p, n=n, cluster_cidr=cluster_cidr) for r in rules)


@dataclass(frozen=True)
class NodeInfo:
    """The node this proxy programs. `name` decides which endpoints are local (hairpin,
    Local traffic policies). `node_ips` are the node's addresses: NodePorts answer on every
    local address but the LB ones (`fib daddr type local`), so the ruleset does not list them;
    they matter for loadBalancerSourceRanges (a node inside the ranges may reach its own LB
    addresses) and keep an ingress on the node's own address (ServiceLB mode) out of
    `load-balancer-ips`."""

    name: str
    node_ips: tuple[str, ...]
    cluster_cidr: str  # the pod network, e.g. 10.244.0.0/16
    service_cidr: str  # e.g. 10.96.0.0/12


@dataclass(frozen=True)
class ServicePortKey:
    """A service port as the dispatch maps see it."""

    ip: str
    protocol: str  # nft keyword: tcp, udp
    port: int


@dataclass(frozen=True)
class State:
    """The complete desired contents of the table beyond its skeleton; compare with ==.

    Elements are nft text, as they are written: `elements["endpoints-tcp"]` maps
    "10.96.0.5 . 80 . 0" to "10.244.0.2 . 8080", `elements["service-ips"]` maps
    "10.96.0.5 . tcp . 80" to "goto ep-tcp-3", set elements map to None. `chains` are the
    endpoint chains in use (shared, named by kind, protocol and count) and the chains of
    Services with session affinity (their own); `sets` the affinity sets, whose elements the
    kernel writes."""

    cluster_cidr: str
    service_cidr: str
    chains: dict[str, tuple[str, ...]]  # name -> rules
    elements: dict[str, dict[str, str | None]]  # every set and map in CONTAINERS
    sets: dict[str, Set] = field(default_factory=dict)  # per-Service affinity sets

    def endpoints(self, key: ServicePortKey) -> tuple[tuple[str, int], ...]:
        """The DNAT targets (ip, port) of a dispatch address in index order; () if it has
        none (or is not dispatched through the shared endpoint maps)."""
        goto = self.elements["service-ips"].get(f"{key.ip} . {key.protocol} . {key.port}")
        if goto is None or not goto.startswith(("goto ep-", "goto xp-")):
            return ()
        endpoints = self.elements[f"endpoints-{key.protocol}"]
        targets = (endpoints[f"{key.ip} . {key.port} . {i}"].split(" . ")
                   for i in range(int(goto.rsplit("-", 1)[1])))
        return tuple((ip, int(port)) for ip, port in targets)


_INDICES: list[str] = []  # "0", "1", ...: endpoint indices as map key text, grown on demand


def _indices(n: int) -> list[str]:
    if len(_INDICES) < n:
        _INDICES.extend(str(i) for i in range(len(_INDICES), n))
    return _INDICES[:n]


def desired(services: list[dict], slices: list[dict], node: NodeInfo) -> State:
    """What the table must hold for these Services and EndpointSlices (Kubernetes JSON).

    Per Service port (TCP/UDP; SCTP skipped): the ready endpoints of the Service's IPv4 slices,
    the port resolved per slice by port name; if none is ready, the serving and terminating ones
    (KEP-1669), separately for this node's endpoints; if none at all, the port rejects.
    ExternalName and headless Services, and Services without an IPv4 ClusterIP, get nothing.
    Dispatch addresses: the ClusterIPs (internal traffic, internalTrafficPolicy), the
    externalIPs and, for type LoadBalancer, the status.loadBalancer.ingress IPs (external
    traffic, externalTrafficPolicy; loadBalancerSourceRanges), and for NodePort and
    LoadBalancer Services the nodePorts (external traffic).
    """
    builder = _Builder(node)
    by_service = _slices_by_service(slices)
    for svc in services:
        meta = svc["metadata"]
        builder.service(svc, by_service.get((meta.get("namespace", "default"), meta["name"]), ()))
    # Each local endpoint's address once, in order of first use (pods are often endpoints of
    # several ports and Services: the dict keeps the first).
    builder.elements["hairpin"].update(
        {f"{ip} . {ip}": None for ip in itertools.chain.from_iterable(builder.local_ips)})
    return State(node.cluster_cidr, node.service_cidr, builder.chains, builder.elements, builder.sets)


class _Builder:
    """Accumulates one State; `service` adds one Service's elements, chains and sets."""

    def __init__(self, node: NodeInfo):
        self.node = node
        self.elements: dict[str, dict[str, str | None]] = {name: {} for name in CONTAINER_NAMES}
        self.chains: dict[str, tuple[str, ...]] = {}
        self.sets: dict[str, Set] = {}
        self.gotos: dict[tuple[str, str, int], str] = {}
        self.cluster_ips: dict[tuple[str, int], tuple[str, dict[str, str | None], list[str]]] = {}
        self.local_ips: list[list[str]] = []  # per service port: the hairpin elements' addresses

    def chain(self, kind: str, p: str, n: int) -> str:
        """The verdict `goto <kind>-<p>-<n>`, adding that endpoint chain on first use (cached:
        every service port asks)."""
        goto = self.gotos.get((kind, p, n))
        if goto is None:
            name, rules = _endpoint_chain(kind, p, n, self.node.cluster_cidr)
            self.chains[name] = rules
            goto = self.gotos[kind, p, n] = f"goto {name}"
        return goto

    def cluster_ip(self, p: str, n: int) -> tuple[str, dict[str, str | None], list[str]]:
        """For a ClusterIP port of protocol `p` with `n` endpoints: its dispatch verdict, its
        endpoint map and the index texts "0".."n-1" (cached: every service port asks)."""
        found = self.cluster_ips.get((p, n))
        if found is None:
            found = self.cluster_ips[p, n] = (self.chain("ep", p, n), self.elements[f"endpoints-{p}"],
                                              _indices(n))
        return found

    @staticmethod
    def indexed(endpoint_map: dict[str, str | None], prefix: str, targets: list[str]) -> None:
        """Targets at indices 0..N-1 under `prefix` (a dispatch key's text) in `endpoint_map`."""
        endpoint_map.update(zip([prefix + i for i in _indices(len(targets))], targets))

    def service(self, svc: dict, slices) -> None:
        # Hot: once per Service at a full sync, so each field is read once and the rarer
        # features (external addresses, LoadBalancer, source ranges, affinity) cost only when set.
        spec = svc.get("spec") or {}
        kind = spec.get("type")
        if kind == "ExternalName":
            return
        vips = _ipv4s(spec.get("clusterIPs") or [spec.get("clusterIP")])
        if not vips:
            return
        e = self.elements
        e["cluster-ips"].update(dict.fromkeys(vips))
        external_ips = spec.get("externalIPs")
        external_ips = _ipv4s(external_ips) if external_ips else []
        lb_ips = ranges = []
        if kind == "LoadBalancer":
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
            lb_ips = _ipv4s([i.get("ip") for i in ingress if i.get("ipMode", "VIP") == "VIP"])
            # Any LB address but the node's own may be local here (announced): Service ports only.
            e["load-balancer-ips"].update(dict.fromkeys(
                ip for ip in _ipv4s([i.get("ip") for i in ingress]) if ip not in self.node.node_ips))
            if lb_ips:
                ranges = _source_ranges(spec.get("loadBalancerSourceRanges") or ())
        xips = [ip for ip in dict.fromkeys(external_ips + lb_ips) if ip not in vips] \
            if external_ips or lb_ips else []
        with_nodeports = kind in NODEPORT_TYPES
        affinity = spec.get("sessionAffinity") == "ClientIP"
        if affinity:
            timeout = (((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
                       .get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
        policy = _POLICIES[spec.get("internalTrafficPolicy") == "Local",
                           spec.get("externalTrafficPolicy") == "Local"]
        for port in spec.get("ports") or ():
            protocol = port.get("protocol") or "TCP"
            p = PROTOCOLS.get(protocol)
            if p is None:
                continue
            cluster, local, local_ips = _endpoints(slices, port.get("name") or "", protocol, self.node.name)
            if local_ips:
                self.local_ips.append(local_ips)
            sport = port["port"]
            nodeport = port.get("nodePort") if with_nodeports else None
            if ranges:
                self.firewall(lb_ips, p, sport, ranges)
            dispatch = None
            if affinity:
                meta = svc["metadata"]
                name = _affinity_id(meta.get("namespace", "default"), meta["name"], p, sport, timeout)
                dispatch = self.affinity(name, p, timeout, cluster, local, policy, bool(xips or nodeport))
            self.port(p, sport, vips, xips, nodeport, cluster, local, policy, dispatch)

    def port(self, p, sport, vips, xips, nodeport, cluster, local, policy, dispatch) -> None:
        """The dispatch and no-endpoint elements of one service port. `dispatch` (affinity) is
        (internal verdict, external verdict) of the Service's own chains, else None: shared
        endpoint chains and maps."""
        e = self.elements
        internal = local if policy.internal_local else cluster
        if not internal:
            no_endpoints = "goto reject-chain" if not cluster else "drop"
            for vip in vips:
                e["no-endpoint-services"][f"{vip} . {p} . {sport}"] = no_endpoints
        elif dispatch:
            for vip in vips:
                e["service-ips"][f"{vip} . {p} . {sport}"] = dispatch[0]
        else:  # the common case, written for speed: one cached lookup, then the elements
            goto, endpoints, indices = self.cluster_ip(p, len(internal))
            for vip in vips:
                e["service-ips"][f"{vip} . {p} . {sport}"] = goto
                prefix = f"{vip} . {sport} . "
                endpoints.update(zip([prefix + i for i in indices], internal))
        for xip in xips:
            self.external(EXTERNAL_IP, f"{xip} . {p} . {sport}", f"{xip} . {sport} . ", p,
                          cluster, local, policy, dispatch)
        if nodeport:
            self.external(NODE_PORT, f"{p} . {nodeport}", f"{nodeport} . ", p,
                          cluster, local, policy, dispatch)

    def external(self, kind: _External, key: str, prefix: str, p: str, cluster, local, policy,
                 dispatch) -> None:
        """One external dispatch key (an external address or a NodePort): its dispatch element,
        its no-endpoint element, and its endpoints (cluster ones and, for eTP Local, local ones)."""
        e = self.elements
        if not cluster or (policy.external_local and not local):
            e[kind.no_endpoints][key] = "goto reject-chain" if not cluster else "drop"
        if not cluster:
            return
        if dispatch:
            e[kind.dispatch][key] = dispatch[1]
            return
        self.indexed(e[kind.endpoints.format(p=p)], prefix, cluster)
        if not policy.external_local:
            e[kind.dispatch][key] = self.chain(kind.cluster_chain, p, len(cluster))
            return
        e[kind.dispatch][key] = self.chain(kind.local_chain, p, len(local))
        e[kind.short_circuit][key] = self.chain(kind.short_circuit_chain, p, len(cluster))
        self.indexed(e[kind.local_endpoints.format(p=p)], prefix, local)

    def firewall(self, lb_ips: list[str], p: str, sport: int, ranges: list[str]) -> None:
        """loadBalancerSourceRanges: new connections to an LB address:port from outside the
        ranges are dropped before DNAT. As kube-proxy does, if the node is inside the ranges,
        so are the LB addresses (a node reaching its own local LB address uses it as source)."""
        allowed = ranges
        if any(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(r)
               for ip in self.node.node_ips if ":" not in ip for r in ranges):
            allowed = _source_ranges(ranges + lb_ips)
        for ip in lb_ips:
            self.elements["firewall-ips"][f"{ip} . {p} . {sport}"] = None
            self.elements["firewall-allow"].update(dict.fromkeys(f"{ip} . {p} . {sport} . {r}" for r in allowed))

    def affinity(self, name: str, p: str, timeout: int, cluster, local, policy,
                 external: bool) -> tuple[str, str]:
        """sessionAffinity ClientIP, kube-proxy's way: per endpoint a set of recent clients
        (timeout `timeoutSeconds`) that every new connection to it refreshes; the Service's
        policy chain sends a remembered client to its endpoint, others to a random one (rule k
        of N matches with probability 1/(N-k): uniform, without a chain per endpoint, since
        every chain in the table costs each later nft transaction). Returns the (internal,
        external) dispatch verdicts."""
        chains = self.chains

        def policy_chain(suffix: str, targets: list[str]) -> str | None:
            if not targets:
                return None
            picks = []
            for target in targets:
                ip, port = target.split(" . ")
                memory = f"{name}-{ip}-{port}"
                self.sets[memory] = Set(memory, typeof="ip saddr", flags="dynamic,timeout", timeout=timeout)
                picks.append((memory, f"update @{memory} {{ ip saddr }} meta l4proto {p} dnat ip to {ip}:{port}"))
            n = len(picks)
            chains[f"{name}-{suffix}"] = (
                tuple(f"ip saddr @{memory} {pick}" for memory, pick in picks)
                + tuple(f"numgen random mod {n - k} == 0 {pick}" for k, (_, pick) in enumerate(picks[:-1]))
                + (picks[-1][1],))
            return f"{name}-{suffix}"

        cluster_chain = policy_chain("cluster", cluster)
        uses_local = policy.internal_local or (policy.external_local and external)
        local_chain = policy_chain("local", local) if uses_local else None
        internal = local_chain if policy.internal_local else cluster_chain
        if policy.external_local:
            rules = ()
            if cluster_chain:
                rules = (_POD.format(cluster_cidr=self.node.cluster_cidr) + f"goto {cluster_chain}",
                         _NODE + f"goto {cluster_chain}")
            rules += (f"goto {local_chain}",) if local_chain else ()
        else:
            rules = (f"{MARK_MASQ} goto {cluster_chain}",) if cluster_chain else ()
        if rules and external:
            chains[f"{name}-external"] = rules
        return f"goto {internal}", f"goto {name}-external"


@dataclass(frozen=True)
class _External:
    """Where one kind of external dispatch key (address:port, or NodePort) lives."""

    dispatch: str
    no_endpoints: str
    short_circuit: str  # eTP Local: pods and the node go to all endpoints through this vmap
    endpoints: str
    local_endpoints: str
    cluster_chain: str  # eTP Cluster: endpoint chain kind (masquerades)
    local_chain: str  # eTP Local: endpoint chain kind
    short_circuit_chain: str  # the pods' and node's endpoint chain kind


EXTERNAL_IP = _External("service-ips", "no-endpoint-services", "external-cluster", "endpoints-{p}",
                        "local-endpoints-{p}", "xp", "xl", "ep")
NODE_PORT = _External("service-nodeports", "no-endpoint-nodeports", "nodeport-cluster",
                      "nodeport-endpoints-{p}", "nodeport-local-endpoints-{p}", "np", "nl", "nc")


class _Policy(NamedTuple):
    internal_local: bool  # internalTrafficPolicy: Local
    external_local: bool  # externalTrafficPolicy: Local


_POLICIES = {(i, x): _Policy(i, x) for i in (False, True) for x in (False, True)}


def _ipv4s(addresses) -> list[str]:
    """The IPv4 addresses in `addresses`, each once, in order ("None": a headless Service)."""
    if len(addresses) == 1:  # most Services have one ClusterIP: no dict for that
        ip = addresses[0]
        return [ip] if ip and ip != "None" and ":" not in ip else []
    return [ip for ip in dict.fromkeys(addresses) if ip and ip != "None" and ":" not in ip]


def _source_ranges(ranges) -> list[str]:
    """loadBalancerSourceRanges as disjoint IPv4 prefixes (nft refuses overlapping intervals);
    host bits are cleared, as Kubernetes' parser tolerates them."""
    nets = []
    for r in ranges:
        try:
            nets.append(ipaddress.IPv4Network(r.strip(), strict=False))
        except ValueError:
            continue  # IPv6 or invalid: not for this IPv4 table
    return [str(n) for n in ipaddress.collapse_addresses(nets)]


def _affinity_id(namespace: str, name: str, p: str, port: int, timeout: int) -> str:
    """A short stable name for a service port's affinity objects (the timeout is part of it:
    an affinity set's timeout cannot change in place)."""
    digest = hashlib.sha256(f"{namespace}/{name}/{p}/{port}/{timeout}".encode()).digest()
    return "aff-" + base64.b32encode(digest)[:8].decode().lower()


def _slices_by_service(slices: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        labels = meta.get("labels")
        name = labels.get("kubernetes.io/service-name") if labels else None
        if name and s.get("addressType") == "IPv4":
            key = (meta.get("namespace", "default"), name)
            bucket = out.get(key)
            if bucket is None:
                out[key] = [s]
            else:
                bucket.append(s)
    return out


# One service port's endpoints sorted by (address, port), as three lists (a plain tuple: one
# per service port, and a NamedTuple's constructor costs more than the rest of the tuple):
# the targets "ip . port" as the endpoint maps hold them, the local ones, and the local ones' IPs.
_Endpoints = tuple[list[str], list[str], list[str]]


def _endpoints(slices, port_name: str, protocol: str, node_name: str) -> _Endpoints:
    """One service port's endpoints: the cluster-wide ones (ready, else serving and terminating)
    and this node's (or no known node's) ones (ready local ones, else serving and terminating
    local ones), as kube-proxy's CategorizeEndpoints. An address listed twice counts once, ready
    first."""
    # target port -> ip -> local. This loop is hot (50,000 endpoints at 10,000 Services), so it
    # only files each address; sorting and the target text come once per port, in _sorted.
    ready: dict[int, dict[str, bool]] = {}
    fallback: dict[int, dict[str, bool]] = {}
    local_nodes = (None, node_name)
    for s in slices:
        for sp in s.get("ports") or ():
            if (sp.get("name") or "") == port_name and (sp.get("protocol") or "TCP") == protocol:
                tport = sp.get("port")
                break
        else:
            continue
        if tport is None:
            continue
        bucket = ready.get(tport)
        if bucket is None:
            bucket = ready[tport] = {}
        for ep in s.get("endpoints") or ():
            addresses = ep.get("addresses")
            if not addresses:
                continue
            c = ep.get("conditions")
            if c and c.get("ready") is False:
                if c.get("serving") is not False and c.get("terminating") is True:
                    fallback.setdefault(tport, {})[addresses[0]] = ep.get("nodeName") in local_nodes
                continue
            bucket[addresses[0]] = ep.get("nodeName") in local_nodes
    cluster, local, local_ips = _sorted(ready)
    if not local and fallback:
        spare, local, local_ips = _sorted({
            tport: {ip: here for ip, here in bucket.items() if ip not in ready.get(tport, ())}
            for tport, bucket in fallback.items()})
        cluster = cluster or spare
    return cluster, local, local_ips


def _sorted(buckets: dict[int, dict[str, bool]]) -> _Endpoints:
    """The endpoints of `buckets` (target port -> ip -> local) in (address, port) order."""
    aton = socket.inet_aton
    if len(buckets) == 1:  # one target port, the common case: sort bare IPs, no tuples
        (tport, bucket), = buckets.items()
        ips = sorted(sorted(bucket), key=aton)  # by address, then by text (aton is not one-to-one)
        suffix = f" . {tport}"
        targets = [ip + suffix for ip in ips]
        if False not in bucket.values():  # all local (one list twice: nothing writes to them)
            return targets, targets, ips
        if True not in bucket.values():
            return targets, [], []
        local = [bucket[ip] for ip in ips]
    else:
        order = sorted([(aton(ip), tport, ip) for tport, bucket in buckets.items() for ip in bucket])
        ips = [ip for _, _, ip in order]
        targets = [f"{ip} . {tport}" for _, tport, ip in order]
        local = [buckets[tport][ip] for _, tport, ip in order]
    return targets, list(itertools.compress(targets, local)), list(itertools.compress(ips, local))


def full_transaction(state: State, remembered: dict[str, dict[str, int]] | None = None) -> Transaction:
    """Replace the whole table atomically with `state`. `remembered` (affinity set -> client
    address -> seconds left, read from the kernel before) is written back into the affinity
    sets that `state` still has, so a full sync does not make clients forget their endpoint."""
    tx = Transaction()
    tx.add(Table())
    tx.delete(Table())
    tx.add(Table())
    for container in CONTAINERS + tuple(state.sets.values()):
        tx.add(container)
    for base in BASE_CHAINS:
        tx.add(base)
    for name in FIXED_CHAINS + tuple(state.chains):
        tx.add(Chain(name))
    cidrs = {"cluster_cidr": state.cluster_cidr, "service_cidr": state.service_cidr}
    for chain, rule in SKELETON_RULES:
        tx.add(Rule(chain, rule.format(**cidrs)))
    for name, rules in state.chains.items():
        for rule in rules:
            tx.add(Rule(name, rule))
    for container, elems in state.elements.items():
        tx.add(Elements(container, elems))
    for name, clients in (remembered or {}).items():
        if name in state.sets:
            tx.add(Elements(name, {f"{ip} expires {left}s": None for ip, left in sorted(clients.items())
                                   if 0 < left <= state.sets[name].timeout}))
    return tx


def partial_transaction(old: State, new: State) -> Transaction | None:
    """The changes that turn table `old` into `new`; None when they are equal. If the skeleton
    itself changed (the node's CIDRs), the full transaction."""
    if (old.cluster_cidr, old.service_cidr) != (new.cluster_cidr, new.service_cidr):
        return full_transaction(new)
    if old == new:
        return None
    tx = Transaction()
    changes = Changes()
    changes.sets(old.sets, new.sets)
    changes.chains(old.chains, new.chains)
    for container in CONTAINER_NAMES:
        changes.elements(container, old.elements[container], new.elements[container])
    changes.write(tx)
    return tx


class Changes:
    """The difference between two tables, written in an order the kernel accepts: new sets;
    new chains (empty, then their rules, which may name each other); changed chains flushed and
    refilled; element deletes, then adds (a changed value is delete + add); then chains that
    went (those that jump flushed first, so none still jumps to another) and their sets."""

    def __init__(self):
        self.new_sets: list[Set] = []
        self.gone_sets: list[Set] = []
        self.new_chains: dict[str, tuple[str, ...]] = {}
        self.changed_chains: dict[str, tuple[str, ...]] = {}
        self.gone_chains: list[str] = []
        self.gone_rules: dict[str, bool] = {}  # gone chain -> it jumps to other chains
        self.removed: dict[str, dict[str, str | None]] = {}
        self.added: dict[str, dict[str, str | None]] = {}

    def sets(self, old: dict[str, Set], new: dict[str, Set]) -> None:
        """Affinity sets are named after everything they declare, so they come and go but
        never change."""
        self.new_sets += [s for n, s in new.items() if n not in old]
        self.gone_sets += [s for n, s in old.items() if n not in new]

    def chains(self, old: dict[str, tuple[str, ...]], new: dict[str, tuple[str, ...]]) -> None:
        for name, rules in new.items():
            if name not in old:
                self.new_chains[name] = rules
            elif old[name] != rules:
                self.changed_chains[name] = rules
        for name in old:
            if name not in new:
                self.gone_chains.append(name)
                self.gone_rules[name] = any(" goto " in f" {r}" or " jump " in f" {r}" for r in old[name])

    def elements(self, container: str, was: dict, now: dict) -> None:
        if was == now:
            return
        removed = dict(sorted(was.items() - now.items()))
        added = dict(sorted(now.items() - was.items()))
        if removed:
            self.removed.setdefault(container, {}).update(removed)
        if added:
            self.added.setdefault(container, {}).update(added)

    def write(self, tx: Transaction) -> None:
        for s in self.new_sets:
            tx.add(s)
        for name in self.new_chains:
            tx.add(Chain(name))
        for name, rules in list(self.new_chains.items()) + list(self.changed_chains.items()):
            if name in self.changed_chains:
                tx.flush(Chain(name))
            for rule in rules:
                tx.add(Rule(name, rule))
        for container in CONTAINER_NAMES:
            if container in self.removed:
                tx.delete(Elements(container, self.removed[container]))
        for container in CONTAINER_NAMES:
            if container in self.added:
                tx.add(Elements(container, self.added[container]))
        for name in self.gone_chains:
            if self.gone_rules.get(name):  # it may jump to another chain that goes
                tx.flush(Chain(name))
        for name in self.gone_chains:
            tx.delete(Chain(name))
        for s in self.gone_sets:
            tx.delete(s)
