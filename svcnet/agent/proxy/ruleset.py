"""The service proxy's nftables ruleset: (Services, EndpointSlices, node) -> State -> Transaction.

Theory of operation
===================

Everything lives in one table, `ip svcnet` (IPv4 single stack). The table has a constant number
of chains: a service or an endpoint is never a chain, it is map and set elements, so the first
packet of a connection costs a few hash lookups however many Services exist, and a change to one
Service is a handful of element updates.

Packet path (priorities are numeric because nft 1.0.6 rejects `dstnat` for the output hook in
some contexts: filter = 0, dstnat = -100, srcnat = 100):

    nat-prerouting (prerouting, -100) --+
    nat-output     (output,     -100) --+-> services:
        ip saddr != <clusterCIDR> ip daddr @cluster-ips  mark 0x4000      off-cluster -> ClusterIP
        ip daddr . meta l4proto . th dport  vmap @service-ips             -> goto ep-<p>-<N>
        fib daddr type local ip daddr != 127.0.0.0/8
                 meta l4proto . th dport  vmap @service-nodeports         -> goto np-<p>-<N>
    ep-<p>-<N>:  dnat to (ip daddr . <p> dport . numgen random mod N) map @endpoints-<p>
    np-<p>-<N>:  mark 0x4000; dnat to (<p> dport . numgen random mod N) map @nodeport-endpoints-<p>
    nat-postrouting (postrouting, 100) -> masquerading:
        ct status dnat ip saddr . ip daddr @hairpin  mark 0x4000          a pod reaching itself
        mark & 0x4000 == 0 return;  clear the mark;  masquerade fully-random
    filter-input   (input,   -110): ct state new -> nodeport-endpoints-check, service-endpoints-check
    filter-forward (forward, -110): ct state new -> service-endpoints-check, cluster-ips-check
    filter-output  (output,  -110): ct state new -> service-endpoints-check
    filter-output-post-dnat (output, -90): ct state new -> cluster-ips-check
    service-endpoints-check:  ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    nodeport-endpoints-check: ip daddr != 127.0.0.0/8 meta l4proto . th dport
                              vmap @no-endpoint-nodeports                 (input: already local)
    cluster-ips-check: ip daddr @cluster-ips reject (live ClusterIP, unknown port);
                       ip daddr <serviceCIDR> drop  (unallocated service IP)
    reject-chain: reject

NodePorts answer on every local address except loopback (CVE-2020-8558: no route_localnet).
Every NodePort (external policy Cluster) is masqueraded; ClusterIP traffic is masqueraded only
when it comes from outside the pod network or hairpins.

Invariants
----------
- The skeleton (base chains, fixed chains, maps, sets and their rules) depends only on the
  node's cluster and service CIDRs. Everything else is `State.elements` plus the shared
  endpoint chains `State.chains`, whose rules are a function of their name.
- A service port with endpoints has its N endpoints at indices 0..N-1 of the endpoint map, in
  sorted (ip, port) order, and its dispatch element points at the chain for count N, which
  draws `numgen random mod N`: each endpoint equally likely. Indices are ranks, so State is a
  pure function of its inputs (removing an endpoint shifts the ones after it; all of it is one
  transaction).
- A service port's key is in exactly one of service-ips / no-endpoint-services (and a NodePort
  in exactly one of service-nodeports / no-endpoint-nodeports).
- Every `goto` in a map element names a chain in the State; every endpoint chain in the State
  is used by some element.
- full_transaction(new) and old + partial_transaction(old, new) leave identical tables.

Endpoint maps are per transport protocol (`endpoints-tcp`, `endpoints-udp`, ...), not one map
keyed by `meta l4proto`: nft 1.0.6 fails with "conflicting protocols specified: ip vs. th" when
a later transaction adds a rule using (or re-declares) a map whose typeof value is
`ip daddr . th dport`, and a value typed `tcp dport` makes nft add a `meta l4proto tcp` check to
the dnat rule, which is right only in a TCP-only chain. With one map per protocol a partial sync
can create a chain for a new endpoint count.

Syncs: a full sync is `add table; delete table; add table` followed by the whole definition, in
one transaction, so the kernel swaps the old table for the new one atomically. A partial sync
only adds/deletes elements (a changed value is delete + add) and adds/deletes endpoint chains.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from svcnet.agent.proxy.nft import Chain, Elements, Map, Rule, Set, Table, Transaction

MASQUERADE_MARK = "0x4000"  # kube-proxy's masqueradeBit 14

# Service port protocol -> nft transport protocol keyword. SCTP ports get no rules yet: adding
# it is one entry here once it has been tried against the kernel's SCTP conntrack/NAT.
PROTOCOLS = {"TCP": "tcp", "UDP": "udp"}

NODEPORT_TYPES = frozenset({"NodePort", "LoadBalancer"})

BASE_CHAINS = (
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
    ("filter-input", "ct state new jump nodeport-endpoints-check"),
    ("filter-input", "ct state new jump service-endpoints-check"),
    ("filter-forward", "ct state new jump service-endpoints-check"),
    ("filter-forward", "ct state new jump cluster-ips-check"),
    ("filter-output", "ct state new jump service-endpoints-check"),
    ("filter-output-post-dnat", "ct state new jump cluster-ips-check"),
    ("nat-prerouting", "jump services"),
    ("nat-output", "jump services"),
    ("nat-postrouting", "jump masquerading"),
    ("services", "ip saddr != {cluster_cidr} ip daddr @cluster-ips"
                 f" meta mark set meta mark or {MASQUERADE_MARK}"),
    ("services", "ip daddr . meta l4proto . th dport vmap @service-ips"),
    ("services", "fib daddr type local ip daddr != 127.0.0.0/8"
                 " meta l4proto . th dport vmap @service-nodeports"),
    ("masquerading", "ct status dnat ip saddr . ip daddr @hairpin"
                     f" meta mark set meta mark or {MASQUERADE_MARK}"),
    ("masquerading", f"meta mark & {MASQUERADE_MARK} == 0 return"),
    ("masquerading", f"meta mark set meta mark xor {MASQUERADE_MARK}"),
    ("masquerading", "masquerade fully-random"),
    ("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services"),
    ("nodeport-endpoints-check", "ip daddr != 127.0.0.0/8 meta l4proto . th dport"
                                 " vmap @no-endpoint-nodeports"),
    ("cluster-ips-check", "ip daddr @cluster-ips reject"),
    ("cluster-ips-check", "ip daddr {service_cidr} drop"),
    ("reject-chain", "reject"),
)

_BASE_NAMES = {c.name for c in BASE_CHAINS}
FIXED_CHAINS = tuple(dict.fromkeys(c for c, _ in SKELETON_RULES if c not in _BASE_NAMES))

CONTAINERS = (
    Map("service-ips", type="ipv4_addr . inet_proto . inet_service : verdict"),
    Map("service-nodeports", type="inet_proto . inet_service : verdict"),
    Map("no-endpoint-services", type="ipv4_addr . inet_proto . inet_service : verdict"),
    Map("no-endpoint-nodeports", type="inet_proto . inet_service : verdict"),
    Set("cluster-ips", type="ipv4_addr"),
    Set("hairpin", type="ipv4_addr . ipv4_addr"),
) + tuple(m for p in PROTOCOLS.values() for m in (
    Map(f"endpoints-{p}", typeof=f"ip daddr . {p} dport . numgen random mod 1 : ip daddr . {p} dport"),
    Map(f"nodeport-endpoints-{p}", typeof=f"{p} dport . numgen random mod 1 : ip daddr . {p} dport"),
))
CONTAINER_NAMES = tuple(c.name for c in CONTAINERS)

# Endpoint chains, one per (kind, protocol, endpoint count) in use: kind -> rules.
ENDPOINT_CHAINS = {
    "ep": ("dnat ip to ip daddr . {p} dport . numgen random mod {n} map @endpoints-{p}",),
    "np": (f"meta mark set meta mark or {MASQUERADE_MARK}",
           "dnat ip to {p} dport . numgen random mod {n} map @nodeport-endpoints-{p}"),
}


@dataclass(frozen=True)
class NodeInfo:
    """The node this proxy programs. `name` decides which endpoints are local (only those can
    hairpin here). `node_ips` are the node's addresses: NodePorts answer on every local address
    (`fib daddr type local`), so the ruleset does not list them."""

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
    "10.96.0.5 . tcp . 80" to "goto ep-tcp-3", set elements map to None."""

    cluster_cidr: str
    service_cidr: str
    chains: dict[str, tuple[str, ...]]  # endpoint chains in use: name -> rules
    elements: dict[str, dict[str, str | None]]  # every set and map in CONTAINERS

    def endpoints(self, key: ServicePortKey) -> tuple[tuple[str, int], ...]:
        """The DNAT targets (ip, port) of a ClusterIP port in index order; () if it has none."""
        goto = self.elements["service-ips"].get(f"{key.ip} . {key.protocol} . {key.port}")
        if goto is None:
            return ()
        endpoints = self.elements[f"endpoints-{key.protocol}"]
        targets = (endpoints[f"{key.ip} . {key.port} . {i}"].split(" . ")
                   for i in range(int(goto.rsplit("-", 1)[1])))
        return tuple((ip, int(port)) for ip, port in targets)


def desired(services: list[dict], slices: list[dict], node: NodeInfo) -> State:
    """What the table must hold for these Services and EndpointSlices (Kubernetes JSON).

    Per Service port (TCP/UDP; SCTP skipped): the ready endpoints of the Service's IPv4 slices,
    the port resolved per slice by port name; if none is ready, the serving and terminating ones
    (KEP-1669); if none at all, the port rejects. ExternalName and headless Services, and
    Services without an IPv4 ClusterIP, get nothing. NodePort and LoadBalancer Services also
    get their nodePorts.
    """
    elements: dict[str, dict[str, str | None]] = {name: {} for name in CONTAINER_NAMES}
    chains: dict[str, tuple[str, ...]] = {}
    service_ips, service_nodeports = elements["service-ips"], elements["service-nodeports"]
    no_ep_services, no_ep_nodeports = elements["no-endpoint-services"], elements["no-endpoint-nodeports"]
    cluster_ips, hairpin = elements["cluster-ips"], elements["hairpin"]

    def chain(kind: str, p: str, n: int) -> str:
        name = f"{kind}-{p}-{n}"
        if name not in chains:
            chains[name] = tuple(r.format(p=p, n=n) for r in ENDPOINT_CHAINS[kind])
        return f"goto {name}"

    by_service = _slices_by_service(slices)
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            continue
        vips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")])
                if ip and ip != "None" and ":" not in ip]
        if not vips:
            continue
        for vip in vips:
            cluster_ips[vip] = None
        meta = svc["metadata"]
        svc_slices = by_service.get((meta.get("namespace", "default"), meta["name"]), ())
        with_nodeports = spec.get("type") in NODEPORT_TYPES
        for port in spec.get("ports") or ():
            protocol = port.get("protocol") or "TCP"
            p = PROTOCOLS.get(protocol)
            if p is None:
                continue
            targets, local = _endpoints(svc_slices, port.get("name") or "", protocol, node.name)
            hairpin.update(dict.fromkeys([f"{ip} . {ip}" for ip in local]))
            sport = port["port"]
            nodeport = port.get("nodePort") if with_nodeports else None
            if not targets:
                for vip in vips:
                    no_ep_services[f"{vip} . {p} . {sport}"] = "goto reject-chain"
                if nodeport:
                    no_ep_nodeports[f"{p} . {nodeport}"] = "goto reject-chain"
                continue
            indices = [str(i) for i in range(len(targets))]
            goto = chain("ep", p, len(targets))
            endpoints = elements[f"endpoints-{p}"]
            for vip in vips:
                service_ips[f"{vip} . {p} . {sport}"] = goto
                prefix = f"{vip} . {sport} . "
                endpoints.update(zip([prefix + i for i in indices], targets))
            if nodeport:
                service_nodeports[f"{p} . {nodeport}"] = chain("np", p, len(targets))
                prefix = f"{nodeport} . "
                elements[f"nodeport-endpoints-{p}"].update(zip([prefix + i for i in indices], targets))
    return State(node.cluster_cidr, node.service_cidr, chains, elements)


def _slices_by_service(slices: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if name and s.get("addressType") == "IPv4":
            out.setdefault((meta.get("namespace", "default"), name), []).append(s)
    return out


def _endpoints(slices, port_name: str, protocol: str, node_name: str) -> tuple[list[str], list[str]]:
    """One service port's DNAT targets ("ip . port", sorted) and the IPs of those on this node
    (or on no known node): ready endpoints, else serving and terminating ones. An address
    listed twice counts once, ready first."""
    ready: dict[tuple[bytes, int, str], bool] = {}
    fallback: dict[tuple[bytes, int, str], bool] = {}
    for s in slices:
        tport = next((sp.get("port") for sp in s.get("ports") or ()
                      if (sp.get("name") or "") == port_name
                      and (sp.get("protocol") or "TCP") == protocol), None)
        if tport is None:
            continue
        for ep in s.get("endpoints") or ():
            addresses = ep.get("addresses")
            if not addresses:
                continue
            c = ep.get("conditions") or {}
            if c.get("ready") is not False:
                bucket = ready
            elif c.get("serving") is not False and c.get("terminating") is True:
                bucket = fallback
            else:
                continue
            ip = addresses[0]
            bucket[(socket.inet_aton(ip), tport, ip)] = ep.get("nodeName") in (None, node_name)
    chosen = ready or fallback
    return ([f"{ip} . {tport}" for _, tport, ip in sorted(chosen)],
            [ip for (_, _, ip), local in chosen.items() if local])


def full_transaction(state: State) -> Transaction:
    """Replace the whole table atomically with `state`."""
    tx = Transaction()
    tx.add(Table())
    tx.delete(Table())
    tx.add(Table())
    for container in CONTAINERS:
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
    return tx


def partial_transaction(old: State, new: State) -> Transaction | None:
    """The element and endpoint-chain changes that turn table `old` into `new`; None when they
    are equal. If the skeleton itself changed (the node's CIDRs), the full transaction."""
    if (old.cluster_cidr, old.service_cidr) != (new.cluster_cidr, new.service_cidr):
        return full_transaction(new)
    if old == new:
        return None
    tx = Transaction()
    for name in [n for n in new.chains if n not in old.chains]:
        tx.add(Chain(name))
        for rule in new.chains[name]:
            tx.add(Rule(name, rule))
    adds = []
    for container in CONTAINER_NAMES:
        was, now = old.elements[container], new.elements[container]
        if was == now:
            continue
        # removed or changed, then added or changed; sorted so the text is deterministic
        tx.delete(Elements(container, dict(sorted(was.items() - now.items()))))
        adds.append(Elements(container, dict(sorted(now.items() - was.items()))))
    for elements in adds:
        tx.add(elements)
    for name in [n for n in old.chains if n not in new.chains]:
        tx.delete(Chain(name))
    return tx
