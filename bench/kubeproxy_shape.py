"""The peer's design on this kernel: a ruleset shaped like kube-proxy's nftables mode, for timing
`nft -f` against svcnet's own ruleset of the same Services (bench/dataplane.py, full_sync and
partial_sync).

Theory of operation
===================

kube-proxy's nftables proxier (pkg/proxy/nftables) gives every service port a chain and every
endpoint a chain, joined by a verdict map and gotos; svcnet keeps a constant number of chains and
puts endpoints in maps. Only the shape matters for the timing, so this renders the part of
kube-proxy's table that a ClusterIP Service uses, with kube-proxy's chain names and rules:

    services:          ip daddr . meta l4proto . th dport vmap @service-ips
    service-HASH-ns/name/tcp/port:
        ip daddr IP tcp dport P ip saddr != CLUSTER_CIDR jump mark-for-masquerade
        numgen random mod N vmap { 0 : goto endpoint-..., ..., N-1 : goto endpoint-... }
    endpoint-HASH-ns/name/tcp/port__IP/PORT:
        ip saddr IP jump mark-for-masquerade
        meta l4proto tcp dnat to IP:PORT

A full sync replaces the table in one transaction; an endpoint change is what kube-proxy's partial
sync writes for one service: flush and rewrite the service chain, create the new endpoint's chain
and delete the old one's, in one transaction. Pure functions: Services and EndpointSlices (API
objects) in, `nft -f` text out.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

TABLE = "ip kube-proxy"
MASQUERADE_MARK = "0x4000"

SKELETON = (
    "add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
    "add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
    "add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
    "add chain {t} services",
    "add chain {t} mark-for-masquerade",
    "add chain {t} masquerading",
    "add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
    "add set {t} cluster-ips {{ type ipv4_addr ; }}",
    "add rule {t} nat-prerouting jump services",
    "add rule {t} nat-output jump services",
    "add rule {t} nat-postrouting jump masquerading",
    "add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
    f"add rule {{t}} mark-for-masquerade meta mark set meta mark or {MASQUERADE_MARK}",
    f"add rule {{t}} masquerading meta mark & {MASQUERADE_MARK} == 0 return",
    f"add rule {{t}} masquerading meta mark set meta mark xor {MASQUERADE_MARK}",
    "add rule {t} masquerading masquerade fully-random",
)


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # tcp / udp
    cluster_ip: str
    port: int
    endpoints: tuple[tuple[str, int], ...]  # (ip, port), ready ones, sorted

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name}"


def _hash(s: str) -> str:
    """kube-proxy's hashAndTruncate: base32 of SHA-256, 8 characters."""
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:8]


def service_chain(sp: ServicePort) -> str:
    return f"service-{_hash(sp.id)}-{sp.id}"


def endpoint_chain(sp: ServicePort, ep: tuple[str, int]) -> str:
    key = f"{sp.id}__{ep[0]}/{ep[1]}"
    return f"endpoint-{_hash(key)}-{key}"


def service_ports(services: list[dict], slices: list[dict]) -> list[ServicePort]:
    """The ClusterIP service ports of `services` with their ready endpoints from `slices`."""
    by_service: dict[tuple[str, str], list[dict]] = {}
    for sl in slices:
        name = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if name:
            by_service.setdefault((sl["metadata"]["namespace"], name), []).append(sl)
    out = []
    for svc in services:
        meta, spec = svc["metadata"], svc["spec"]
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        for p in spec.get("ports") or []:
            eps = set()
            for sl in by_service.get((meta["namespace"], meta["name"]), []):
                port = next((q.get("port") for q in sl.get("ports") or []
                             if (q.get("name") or "") == (p.get("name") or "")), None)
                for ep in sl.get("endpoints") or []:
                    if port and (ep.get("conditions") or {}).get("ready", True):
                        eps.update((a, port) for a in ep["addresses"])
            out.append(ServicePort(meta["namespace"], meta["name"], p.get("name") or "",
                                   p.get("protocol", "TCP").lower(), ip, p["port"], tuple(sorted(eps))))
    return out


def _service_rules(sp: ServicePort, cluster_cidr: str) -> list[str]:
    chain = service_chain(sp)
    rules = [f"add rule {TABLE} {chain} ip daddr {sp.cluster_ip} {sp.protocol} dport {sp.port} "
             f"ip saddr != {cluster_cidr} jump mark-for-masquerade"]
    if sp.endpoints:
        vmap = " , ".join(f"{i} : goto {endpoint_chain(sp, ep)}" for i, ep in enumerate(sp.endpoints))
        rules.append(f"add rule {TABLE} {chain} numgen random mod {len(sp.endpoints)} vmap {{ {vmap} }}")
    return rules


def _endpoint_rules(sp: ServicePort, ep: tuple[str, int]) -> list[str]:
    chain = endpoint_chain(sp, ep)
    return [f"add rule {TABLE} {chain} ip saddr {ep[0]} jump mark-for-masquerade",
            f"add rule {TABLE} {chain} meta l4proto {sp.protocol} dnat to {ep[0]}:{ep[1]}"]


def full(ports: list[ServicePort], cluster_cidr: str) -> str:
    """The whole table, replacing any previous one, as one transaction."""
    lines = [f"add table {TABLE}", f"delete table {TABLE}", f"add table {TABLE}"]
    lines += [line.format(t=TABLE) for line in SKELETON]
    for sp in ports:
        lines.append(f"add chain {TABLE} {service_chain(sp)}")
        lines += [f"add chain {TABLE} {endpoint_chain(sp, ep)}" for ep in sp.endpoints]
    for sp in ports:
        lines += _service_rules(sp, cluster_cidr)
        for ep in sp.endpoints:
            lines += _endpoint_rules(sp, ep)
    for sp in ports:
        lines.append(f"add element {TABLE} service-ips {{ {sp.cluster_ip} . {sp.protocol} . {sp.port} "
                     f": goto {service_chain(sp)} }}")
        lines.append(f"add element {TABLE} cluster-ips {{ {sp.cluster_ip} }}")
    return "\n".join(lines) + "\n"


def endpoint_change(old: ServicePort, new: ServicePort, cluster_cidr: str) -> str:
    """kube-proxy's partial sync of one service port whose endpoints went from `old` to `new`."""
    chain = service_chain(new)
    lines = [f"add chain {TABLE} {chain}", f"flush chain {TABLE} {chain}"]
    added = [ep for ep in new.endpoints if ep not in old.endpoints]
    for ep in added:
        lines += [f"add chain {TABLE} {endpoint_chain(new, ep)}", f"flush chain {TABLE} {endpoint_chain(new, ep)}"]
    lines += _service_rules(new, cluster_cidr)
    for ep in added:
        lines += _endpoint_rules(new, ep)
    lines += [f"delete chain {TABLE} {endpoint_chain(old, ep)}" for ep in old.endpoints if ep not in new.endpoints]
    return "\n".join(lines) + "\n"
