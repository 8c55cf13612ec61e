"""Cluster DNS answers: a pure function of the current Services, EndpointSlices and Namespaces.

Theory of operation
- `Catalog` holds what DNS needs of the API objects (`ServiceInfo`, `SliceInfo`), kept current
  by the server's watches through `set_service` / `delete_service` / `set_slice` /
  `delete_slice` / `set_namespaces`, and a reverse index (IP -> name) maintained with them.
- `answer(catalog, qname, qtype)` returns an `Answer`: rcode and records, `owner` (which cached
  answers a change must invalidate), `forward` (the name is outside the cluster's zones: ask the
  upstream resolvers) and `chase` (an ExternalName's target outside the cluster domain, whose
  addresses the server adds after the CNAME, as CoreDNS does).
- Names follow the Kubernetes DNS specification 1.1.0 as CoreDNS's kubernetes plugin serves it
  (zone `cluster.local`, TTL 5 s):
    <svc>.<ns>.svc.<zone>              A: the ClusterIP; headless: one A per ready endpoint
                                       (all endpoints with publishNotReadyAddresses), NXDOMAIN
                                       with none; ExternalName: CNAME to externalName
    <hostname>.<svc>.<ns>.svc.<zone>   A of the endpoint with that hostname (or with the IP in
                                       dashed form, a-b-c-d, when it has none)
    _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV for a named port: the Service name (ClusterIP)
                                       or each endpoint's hostname name (headless), with their
                                       A records as additional records
    <a-b-c-d>.<ns>.pod.<zone>          A a.b.c.d (CoreDNS `pods insecure`)
    d.c.b.a.in-addr.arpa               PTR for ClusterIPs and endpoint addresses; an unknown
                                       address is forwarded (CoreDNS `fallthrough`)
    <zone>                             SOA and NS; dns-version.<zone> TXT "1.1.0"
  A name that does not exist is NXDOMAIN; a name that exists without records of the asked type
  (AAAA on this IPv4-only cluster, an empty namespace) is NOERROR with no answers (NODATA);
  both carry the zone's SOA for negative caching.
- Owners: an answer under <svc>.<ns>.svc.<zone> depends only on that Service and its slices
  (owner ("svc", ns, name)); namespace-level names depend on the namespaces (owner NAMESPACES);
  PTR and cross-Service answers may depend on anything (owner ANYTHING). A Service or slice
  change invalidates its own owner and ANYTHING; a namespace change invalidates everything.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from svcnet.agent.dns.wire import (A, ANY, CNAME, IN, NS, NXDOMAIN, NOERROR, PTR, SOA, SRV,
                                   TXT, Record)

TTL = 5
SPEC_VERSION = "1.1.0"
NAMESPACES = ("namespaces",)
ANYTHING = None


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str  # TCP, UDP, SCTP
    port: int


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ips: tuple[str, ...] = ()
    headless: bool = False
    external_name: str = ""
    ports: tuple[Port, ...] = ()
    publish_not_ready: bool = False


@dataclass(frozen=True)
class Endpoint:
    ip: str
    hostname: str = ""
    ready: bool = True


@dataclass(frozen=True)
class SliceInfo:
    namespace: str
    name: str
    service: str
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[Port, ...] = ()


def service_info(obj: dict) -> ServiceInfo:
    """What DNS needs of a Service object."""
    m, spec = obj["metadata"], obj.get("spec") or {}
    ips = tuple(ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP") or ""])
                if ip and ip != "None" and ":" not in ip)
    return ServiceInfo(
        namespace=m.get("namespace") or "default", name=m["name"],
        type=spec.get("type") or "ClusterIP", cluster_ips=ips,
        headless=spec.get("clusterIP") == "None",
        external_name=(spec.get("externalName") or "").rstrip(".").lower(),
        ports=tuple(Port(p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
                    for p in spec.get("ports") or []),
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")))


def slice_info(obj: dict) -> SliceInfo | None:
    """What DNS needs of an EndpointSlice; None for slices DNS does not serve (not IPv4, or not
    labelled with a Service)."""
    m = obj["metadata"]
    svc = (m.get("labels") or {}).get("kubernetes.io/service-name")
    if not svc or obj.get("addressType", "IPv4") != "IPv4":
        return None
    eps = []
    for ep in obj.get("endpoints") or []:
        ready = (ep.get("conditions") or {}).get("ready")
        for ip in ep.get("addresses") or []:
            eps.append(Endpoint(ip, (ep.get("hostname") or "").lower(), ready is not False))
    ports = tuple(Port(p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
                  for p in obj.get("ports") or [])
    return SliceInfo(m.get("namespace") or "default", m["name"], svc, tuple(eps), ports)


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


@dataclass
class Catalog:
    domain: str = "cluster.local"
    serial: int = 1
    services: dict[tuple[str, str], ServiceInfo] = field(default_factory=dict)
    slices: dict[tuple[str, str], dict[str, SliceInfo]] = field(default_factory=dict)
    namespaces: set[str] | None = None  # None: a namespace exists when it has a Service
    _ptr: dict[str, dict[tuple, tuple[int, str]]] = field(default_factory=dict)  # ip -> {source: (rank, name)}
    _slice_service: dict[tuple[str, str], str] = field(default_factory=dict)  # slice -> Service
    stale_owners: list[tuple] = field(default_factory=list)  # extra owners to invalidate

    def __post_init__(self) -> None:
        self.domain = self.domain.strip(".").lower()

    # ---- updates (each returns the owner key whose cached answers are now stale) ----------

    def set_service(self, info: ServiceInfo) -> tuple:
        key = (info.namespace, info.name)
        self._unindex_service(key)
        self.services[key] = info
        for ip in info.cluster_ips:
            self._ptr.setdefault(ip, {})[("svc", *key)] = (0, self.service_name(*key))
        return ("svc", *key)

    def delete_service(self, namespace: str, name: str) -> tuple:
        self._unindex_service((namespace, name))
        self.services.pop((namespace, name), None)
        return ("svc", namespace, name)

    def set_slice(self, info: SliceInfo) -> tuple:
        old = self._drop_slice(info.namespace, info.name)
        if old is not None and old[2] != info.service:
            self.stale_owners.append(old)  # the slice moved to another Service (relabelled)
        self.slices.setdefault((info.namespace, info.service), {})[info.name] = info
        self._slice_service[(info.namespace, info.name)] = info.service
        base = self.service_name(info.namespace, info.service)
        for ep in info.endpoints:
            self._ptr.setdefault(ep.ip, {})[("ep", info.namespace, info.name)] = (
                1 if ep.hostname else 2, f"{ep.hostname or dashed(ep.ip)}.{base}")
        return ("svc", info.namespace, info.service)

    def delete_slice(self, namespace: str, name: str) -> tuple | None:
        return self._drop_slice(namespace, name)

    def set_namespaces(self, names: set[str] | None) -> None:
        self.namespaces = names

    def _drop_slice(self, namespace: str, name: str) -> tuple | None:
        svc = self._slice_service.pop((namespace, name), None)
        if svc is None:
            return None
        by_name = self.slices[(namespace, svc)]
        old = by_name.pop(name)
        if not by_name:
            del self.slices[(namespace, svc)]
        for ep in old.endpoints:
            names = self._ptr.get(ep.ip)
            if names is not None:
                names.pop(("ep", namespace, name), None)
                if not names:
                    del self._ptr[ep.ip]
        return ("svc", namespace, svc)

    def _unindex_service(self, key: tuple[str, str]) -> None:
        old = self.services.get(key)
        for ip in old.cluster_ips if old else ():
            names = self._ptr.get(ip)
            if names is not None:
                names.pop(("svc", *key), None)
                if not names:
                    del self._ptr[ip]

    # ---- reads -------------------------------------------------------------------------------

    def service_name(self, namespace: str, name: str) -> str:
        return f"{name}.{namespace}.svc.{self.domain}"

    def namespace_exists(self, namespace: str) -> bool:
        if self.namespaces is not None:
            return namespace in self.namespaces
        return any(ns == namespace for ns, _ in self.services)

    def endpoints(self, svc: ServiceInfo) -> list[Endpoint]:
        """The endpoints DNS publishes: ready ones (all with publishNotReadyAddresses), once
        per address, in address order."""
        seen: dict[str, Endpoint] = {}
        for sl in (self.slices.get((svc.namespace, svc.name)) or {}).values():
            for ep in sl.endpoints:
                if (ep.ready or svc.publish_not_ready) and ep.ip not in seen:
                    seen[ep.ip] = ep
        return [seen[ip] for ip in sorted(seen, key=_ip_key)]

    def endpoint_ports(self, svc: ServiceInfo) -> list[Port]:
        ports: dict[tuple[str, str], Port] = {}
        for sl in (self.slices.get((svc.namespace, svc.name)) or {}).values():
            for p in sl.ports:
                ports.setdefault((p.name, p.protocol), p)
        return list(ports.values())

    def ptr(self, ip: str) -> str | None:
        """The name of a ClusterIP, else of an endpoint with a hostname, else of any endpoint
        with that address; among equals, the smallest name."""
        names = self._ptr.get(ip)
        return min(names.values())[1] if names else None


def _ip_key(ip: str):
    try:
        return (0, int(ipaddress.IPv4Address(ip)))
    except ValueError:
        return (1, ip)


@dataclass
class Answer:
    rcode: int = NOERROR
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    owner: tuple | None = ANYTHING
    forward: bool = False
    chase: str = ""  # an out-of-cluster CNAME target whose records the server appends


def soa(catalog: Catalog) -> Record:
    d = catalog.domain
    return Record(d, SOA, TTL, (f"ns.dns.{d}", f"hostmaster.{d}", catalog.serial, 7200, 1800,
                                86400, TTL))


def _negative(catalog: Catalog, rcode: int, owner) -> Answer:
    return Answer(rcode, authority=[soa(catalog)], owner=owner)


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def answer(catalog: Catalog, qname: str, qtype: int, qclass: int = IN) -> Answer:
    """The answer to one question (see the module doc). `qname` in any case, no trailing dot."""
    name = qname.lower().rstrip(".")
    zone = catalog.domain
    if in_zone(name, zone):
        rel = name[:-len(zone)].rstrip(".").split(".") if name != zone else []
        return _in_zone(catalog, name, qtype, rel)
    if name.endswith(".in-addr.arpa"):
        ip = _reverse_ip(name)
        target = catalog.ptr(ip) if ip else None
        if target:
            return Answer(answers=[Record(name, PTR, TTL, target)] if qtype in (PTR, ANY) else [],
                          authority=[] if qtype in (PTR, ANY) else [soa(catalog)])
    return Answer(forward=True)


def _reverse_ip(name: str) -> str | None:
    parts = name[:-len(".in-addr.arpa")].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


def _in_zone(catalog: Catalog, name: str, qtype: int, rel: list[str]) -> Answer:
    zone = catalog.domain
    if not rel:
        if qtype == SOA:
            return Answer(answers=[soa(catalog)], owner=NAMESPACES)
        if qtype == NS:
            return Answer(answers=[Record(zone, NS, TTL, f"ns.dns.{zone}")], owner=NAMESPACES)
        return _negative(catalog, NOERROR, NAMESPACES)
    if rel == ["dns-version"]:
        if qtype in (TXT, ANY):
            return Answer(answers=[Record(name, TXT, TTL, (SPEC_VERSION,))], owner=NAMESPACES)
        return _negative(catalog, NOERROR, NAMESPACES)
    if rel == ["ns", "dns"]:
        dns = catalog.services.get(("kube-system", "kube-dns"))
        ips = dns.cluster_ips if dns else ()
        if qtype in (A, ANY) and ips:
            return Answer(answers=[Record(name, A, TTL, ip) for ip in ips], owner=ANYTHING)
        return _negative(catalog, NOERROR if ips else NXDOMAIN, ANYTHING)
    kind = rel[-1]
    if kind == "svc":
        if len(rel) <= 2:
            exists = len(rel) == 1 or catalog.namespace_exists(rel[0])
            return _negative(catalog, NOERROR if exists else NXDOMAIN, NAMESPACES)
        return _service_names(catalog, name, qtype, rel)
    if kind == "pod" and len(rel) in (2, 3):
        exists = catalog.namespace_exists(rel[-2])
        if len(rel) == 2:
            return _negative(catalog, NOERROR if exists else NXDOMAIN, NAMESPACES)
        ip = _undash(rel[0])
        if not exists or ip is None:
            return _negative(catalog, NXDOMAIN, NAMESPACES)
        if qtype in (A, ANY):
            return Answer(answers=[Record(name, A, TTL, ip)], owner=NAMESPACES)
        return _negative(catalog, NOERROR, NAMESPACES)
    return _negative(catalog, NXDOMAIN, NAMESPACES)


def _undash(label: str) -> str | None:
    if label.count("-") != 3:
        return None
    try:
        return str(ipaddress.IPv4Address(label.replace("-", ".")))
    except ValueError:
        return None


def _service_names(catalog: Catalog, name: str, qtype: int, rel: list[str]) -> Answer:
    svc_name, ns = rel[-3], rel[-2]
    owner = ("svc", ns, svc_name)
    svc = catalog.services.get((ns, svc_name))
    if svc is None or len(rel) > 5:
        return _negative(catalog, NXDOMAIN, owner)
    if svc.type == "ExternalName":
        if len(rel) != 3 or not svc.external_name:
            return _negative(catalog, NXDOMAIN, owner)
        return _external_name(catalog, name, qtype, svc, owner)
    if len(rel) == 3:
        return _service(catalog, name, qtype, svc, owner)
    if len(rel) == 4:
        if rel[0].startswith("_"):  # _proto.<svc>...: an empty non-terminal above the SRV names
            exists = any(("_" + p.protocol.lower()) == rel[0] for p in _ports(catalog, svc))
            return _negative(catalog, NOERROR if exists else NXDOMAIN, owner)
        eps = [ep for ep in catalog.endpoints(svc) if (ep.hostname or dashed(ep.ip)) == rel[0]]
        if not eps:
            return _negative(catalog, NXDOMAIN, owner)
        if qtype in (A, ANY):
            return Answer(answers=[Record(name, A, TTL, ep.ip) for ep in eps], owner=owner)
        return _negative(catalog, NOERROR, owner)
    port_label, proto_label = rel[0], rel[1]
    if not (port_label.startswith("_") and proto_label.startswith("_")):
        return _negative(catalog, NXDOMAIN, owner)
    ports = [p for p in _ports(catalog, svc)
             if p.name and p.name.lower() == port_label[1:] and p.protocol.lower() == proto_label[1:]]
    if not ports:
        return _negative(catalog, NXDOMAIN, owner)
    if qtype not in (SRV, ANY):
        return _negative(catalog, NOERROR, owner)
    return _srv(catalog, name, svc, ports, owner)


def _ports(catalog: Catalog, svc: ServiceInfo) -> list[Port]:
    """Headless Services publish their endpoints' ports (target ports), others their own."""
    return catalog.endpoint_ports(svc) if svc.headless else list(svc.ports)


def _service(catalog: Catalog, name: str, qtype: int, svc: ServiceInfo, owner) -> Answer:
    if svc.headless:
        eps = catalog.endpoints(svc)
        if not eps:
            return _negative(catalog, NXDOMAIN, owner)  # as CoreDNS: no endpoints, no name
        if qtype in (A, ANY):
            return Answer(answers=[Record(name, A, TTL, ep.ip) for ep in eps], owner=owner)
        if qtype == SRV:
            return _srv(catalog, name, svc, _ports(catalog, svc), owner)
        return _negative(catalog, NOERROR, owner)
    if qtype in (A, ANY) and svc.cluster_ips:
        return Answer(answers=[Record(name, A, TTL, ip) for ip in svc.cluster_ips], owner=owner)
    if qtype == SRV and svc.ports:
        return _srv(catalog, name, svc, list(svc.ports), owner)
    return _negative(catalog, NOERROR, owner)


def _srv(catalog: Catalog, name: str, svc: ServiceInfo, ports: list[Port], owner) -> Answer:
    base = catalog.service_name(svc.namespace, svc.name)
    if svc.headless:
        targets = [(f"{ep.hostname or dashed(ep.ip)}.{base}", ep.ip) for ep in catalog.endpoints(svc)]
    else:
        targets = [(base, ip) for ip in svc.cluster_ips]
    if not targets:
        return _negative(catalog, NXDOMAIN if svc.headless else NOERROR, owner)
    n = len(targets) * len(ports)
    weight = max(1, 100 // n)
    answers, extra, seen = [], [], set()
    for p in ports:
        for target, ip in targets:
            answers.append(Record(name, SRV, TTL, (0, weight, p.port, target)))
            if (target, ip) not in seen:
                seen.add((target, ip))
                extra.append(Record(target, A, TTL, ip))
    return Answer(answers=answers, additional=extra, owner=owner)


def _external_name(catalog: Catalog, name: str, qtype: int, svc: ServiceInfo, owner) -> Answer:
    target = svc.external_name
    cname = Record(name, CNAME, TTL, target)
    if qtype == CNAME:
        return Answer(answers=[cname], owner=owner)
    if in_zone(target, catalog.domain):
        inner = answer(catalog, target, qtype) if target != name else Answer()
        if inner.rcode == NOERROR and inner.answers and not inner.answers[0].type == CNAME:
            return Answer(answers=[cname, *inner.answers], additional=inner.additional,
                          owner=ANYTHING)
        return Answer(answers=[cname], authority=[soa(catalog)], owner=ANYTHING)
    return Answer(answers=[cname], owner=owner, chase=target)
