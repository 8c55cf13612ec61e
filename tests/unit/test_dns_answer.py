"""The cluster DNS answerer: Services and EndpointSlices -> records, as the Kubernetes DNS
specification and CoreDNS's kubernetes plugin have them. Pure: no sockets."""

import pytest

from svcnet.agent.dns.answer import (ANYTHING, NAMESPACES, Catalog, answer, service_info,
                                     slice_info)
from svcnet.agent.dns.wire import (A, AAAA, CNAME, MX, NOERROR, NS, NXDOMAIN, PTR, SOA, SRV, TXT)

Z = "svc.cluster.local"


def svc(name, ns="default", ip="10.96.0.20", ports=(("http", "TCP", 80),), **spec):
    body = {"clusterIP": ip, "clusterIPs": [ip] if ip != "None" else ["None"],
            "ports": [{"name": n, "protocol": p, "port": port} for n, p, port in ports], **spec}
    if spec.get("type") == "ExternalName":
        body.pop("clusterIP")
        body.pop("clusterIPs")
    return {"metadata": {"name": name, "namespace": ns}, "spec": body}


def eps(service, *endpoints, ns="default", name=None, ports=(("http", "TCP", 8080),),
        address_type="IPv4"):
    """endpoints: (ip, hostname, ready)."""
    return {"metadata": {"name": name or f"{service}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": address_type,
            "endpoints": [{"addresses": [ip], **({"hostname": h} if h else {}),
                           "conditions": {"ready": ready}} for ip, h, ready in endpoints],
            "ports": [{"name": n, "protocol": p, "port": port} for n, p, port in ports]}


@pytest.fixture
def catalog():
    c = Catalog()
    c.set_namespaces({"default", "kube-system", "empty"})
    c.set_service(service_info(svc("web", ports=(("http", "TCP", 80), ("metrics", "TCP", 9100),
                                                  ("dns", "UDP", 53)))))
    c.set_slice(slice_info(eps("web", ("10.244.0.5", "", True), ("10.244.0.6", "", True))))
    c.set_service(service_info(svc("db", ip="None", ports=(("pg", "TCP", 5432),),
                                   selector={"app": "db"})))
    c.set_slice(slice_info(eps("db", ("10.244.0.7", "db-0", True), ("10.244.0.8", "", True),
                               ("10.244.0.9", "db-2", False), ports=(("pg", "TCP", 5432),))))
    c.set_service(service_info(svc("lonely", ip="None")))
    c.set_service(service_info(svc("ext", type="ExternalName", externalName="www.Example.com.")))
    c.set_service(service_info(svc("alias", type="ExternalName",
                                   externalName="web.default.svc.cluster.local")))
    c.set_service(service_info(svc("kube-dns", "kube-system", "10.96.0.10",
                                   (("dns", "UDP", 53), ("dns-tcp", "TCP", 53)))))
    return c


def data(a, section="answers"):
    return sorted(str(r.data) for r in getattr(a, section))


def test_a_record_of_a_cluster_ip_service(catalog):
    a = answer(catalog, f"web.default.{Z}", A)
    assert (a.rcode, data(a)) == (NOERROR, ["10.96.0.20"])
    assert a.answers[0].ttl == 5 and a.answers[0].name == f"web.default.{Z}"
    assert a.owner == ("svc", "default", "web") and not a.forward


def test_names_are_case_insensitive_and_may_end_with_a_dot(catalog):
    assert data(answer(catalog, "WEB.Default.SVC.cluster.LOCAL.", A)) == ["10.96.0.20"]


def test_aaaa_on_an_ipv4_name_is_nodata_with_the_soa(catalog):
    a = answer(catalog, f"web.default.{Z}", AAAA)
    assert (a.rcode, a.answers) == (NOERROR, [])
    assert [r.type for r in a.authority] == [SOA] and a.authority[0].data[-1] == 5


def test_unknown_service_is_nxdomain_with_the_soa(catalog):
    a = answer(catalog, f"nope.default.{Z}", A)
    assert (a.rcode, a.answers, [r.type for r in a.authority]) == (NXDOMAIN, [], [SOA])
    assert a.owner == ("svc", "default", "nope")  # creating `nope` invalidates it


def test_headless_service_has_one_a_per_ready_endpoint(catalog):
    a = answer(catalog, f"db.default.{Z}", A)
    assert data(a) == ["10.244.0.7", "10.244.0.8"]  # 10.244.0.9 is not ready


def test_headless_with_publish_not_ready_addresses_has_them_all(catalog):
    catalog.set_service(service_info(svc("db", ip="None", ports=(("pg", "TCP", 5432),),
                                         publishNotReadyAddresses=True)))
    assert data(answer(catalog, f"db.default.{Z}", A)) == ["10.244.0.7", "10.244.0.8", "10.244.0.9"]


def test_headless_without_endpoints_is_nxdomain_as_coredns(catalog):
    assert answer(catalog, f"lonely.default.{Z}", A).rcode == NXDOMAIN


def test_endpoint_hostname_records(catalog):
    assert data(answer(catalog, f"db-0.db.default.{Z}", A)) == ["10.244.0.7"]
    assert data(answer(catalog, f"10-244-0-8.db.default.{Z}", A)) == ["10.244.0.8"]  # no hostname
    assert answer(catalog, f"db-2.db.default.{Z}", A).rcode == NXDOMAIN  # not ready
    assert answer(catalog, f"db-0.db.default.{Z}", AAAA).rcode == NOERROR


def test_srv_for_a_named_port_of_a_cluster_ip_service(catalog):
    a = answer(catalog, f"_http._tcp.web.default.{Z}", SRV)
    assert [r.data for r in a.answers] == [(0, 100, 80, f"web.default.{Z}")]
    assert [(r.name, r.data) for r in a.additional] == [(f"web.default.{Z}", "10.96.0.20")]
    assert [r.data[2] for r in answer(catalog, f"_dns._udp.web.default.{Z}", SRV).answers] == [53]
    assert answer(catalog, f"_dns._tcp.web.default.{Z}", SRV).rcode == NXDOMAIN  # wrong protocol
    assert answer(catalog, f"_nope._tcp.web.default.{Z}", SRV).rcode == NXDOMAIN
    a = answer(catalog, f"_http._tcp.web.default.{Z}", A)
    assert (a.rcode, a.answers) == (NOERROR, [])  # the name exists, with SRV only


def test_srv_of_a_headless_service_names_each_endpoint(catalog):
    a = answer(catalog, f"_pg._tcp.db.default.{Z}", SRV)
    assert sorted(r.data for r in a.answers) == [(0, 50, 5432, f"10-244-0-8.db.default.{Z}"),
                                                 (0, 50, 5432, f"db-0.db.default.{Z}")]
    assert sorted((r.name, r.data) for r in a.additional) == [
        (f"10-244-0-8.db.default.{Z}", "10.244.0.8"), (f"db-0.db.default.{Z}", "10.244.0.7")]


def test_srv_of_the_service_name_lists_every_port(catalog):
    a = answer(catalog, f"web.default.{Z}", SRV)
    assert sorted(r.data[2] for r in a.answers) == [53, 80, 9100]


def test_external_name_is_a_cname_chased_upstream(catalog):
    a = answer(catalog, f"ext.default.{Z}", A)
    assert [(r.type, r.data) for r in a.answers] == [(CNAME, "www.example.com")]
    assert a.chase == "www.example.com"
    c = answer(catalog, f"ext.default.{Z}", CNAME)
    assert (c.chase, data(c)) == ("", ["www.example.com"])


def test_external_name_inside_the_cluster_is_resolved_here(catalog):
    a = answer(catalog, f"alias.default.{Z}", A)
    assert [(r.type, r.data) for r in a.answers] == [(CNAME, f"web.default.{Z}"), (A, "10.96.0.20")]
    assert a.chase == "" and a.owner is ANYTHING  # it depends on another Service


def test_namespaces_and_other_names_in_the_zone(catalog):
    assert answer(catalog, f"default.{Z}", A).rcode == NOERROR  # exists, no records
    assert answer(catalog, f"empty.{Z}", A).rcode == NOERROR
    assert answer(catalog, f"nonamespace.{Z}", A).rcode == NXDOMAIN
    assert answer(catalog, f"web.nonamespace.{Z}", A).rcode == NXDOMAIN
    assert answer(catalog, "cluster.local", A).rcode == NOERROR
    assert answer(catalog, "something.cluster.local", A).rcode == NXDOMAIN
    assert answer(catalog, f"a.b.web.default.{Z}", A).rcode == NXDOMAIN
    assert answer(catalog, f"web.default.{Z}.default.{Z}", A).rcode == NXDOMAIN  # search junk
    assert answer(catalog, f"default.{Z}", A).owner == NAMESPACES


def test_zone_apex_and_dns_version(catalog):
    assert [r.type for r in answer(catalog, "cluster.local", SOA).answers] == [SOA]
    assert data(answer(catalog, "cluster.local", NS)) == ["ns.dns.cluster.local"]
    assert data(answer(catalog, "ns.dns.cluster.local", A)) == ["10.96.0.10"]
    assert [r.data for r in answer(catalog, "dns-version.cluster.local", TXT).answers] == [("1.1.0",)]


def test_pod_names_insecure_mode(catalog):
    assert data(answer(catalog, "10-244-0-9.default.pod.cluster.local", A)) == ["10.244.0.9"]
    assert answer(catalog, "10-244-0-9.nonamespace.pod.cluster.local", A).rcode == NXDOMAIN
    assert answer(catalog, "not-an-ip.default.pod.cluster.local", A).rcode == NXDOMAIN


def test_ptr_for_cluster_ips_and_endpoints(catalog):
    assert data(answer(catalog, "20.0.96.10.in-addr.arpa", PTR)) == [f"web.default.{Z}"]
    assert data(answer(catalog, "7.0.244.10.in-addr.arpa", PTR)) == [f"db-0.db.default.{Z}"]
    # an endpoint of two Services is named by the one where it has a hostname
    catalog.set_slice(slice_info(eps("web", ("10.244.0.7", "", True), name="web-2")))
    assert data(answer(catalog, "7.0.244.10.in-addr.arpa", PTR)) == [f"db-0.db.default.{Z}"]
    assert answer(catalog, "7.0.244.10.in-addr.arpa", MX).answers == []
    assert answer(catalog, "99.0.244.10.in-addr.arpa", PTR).forward  # unknown: fall through
    catalog.delete_service("default", "web")
    assert answer(catalog, "20.0.96.10.in-addr.arpa", PTR).forward


def test_names_outside_the_cluster_domain_are_forwarded(catalog):
    assert answer(catalog, "www.example.com", A).forward
    assert answer(catalog, "local", A).forward


def test_updates_and_deletes(catalog):
    assert catalog.set_slice(slice_info(eps("db", ("10.244.0.10", "", True), name="db-xyz"))) == \
        ("svc", "default", "db")
    assert "10.244.0.10" in data(answer(catalog, f"db.default.{Z}", A))
    assert catalog.delete_slice("default", "db-xyz") == ("svc", "default", "db")
    assert catalog.delete_slice("default", "db-xyz") is None
    assert "10.244.0.10" not in data(answer(catalog, f"db.default.{Z}", A))
    assert answer(catalog, "10.0.244.10.in-addr.arpa", PTR).forward
    catalog.delete_service("default", "db")
    assert answer(catalog, f"db.default.{Z}", A).rcode == NXDOMAIN


def test_a_relabelled_slice_reports_its_old_service_as_stale(catalog):
    moved = eps("web", ("10.244.0.7", "", True), name="db-abc")  # was db's slice
    assert catalog.set_slice(slice_info(moved)) == ("svc", "default", "web")
    assert catalog.stale_owners == [("svc", "default", "db")]


def test_slices_dns_does_not_serve():
    assert slice_info(eps("db", ("fd00::1", "", True), address_type="IPv6")) is None
    unlabelled = eps("db", ("10.0.0.1", "", True))
    unlabelled["metadata"]["labels"] = {}
    assert slice_info(unlabelled) is None


def test_duplicate_addresses_across_slices_are_answered_once(catalog):
    catalog.set_slice(slice_info(eps("db", ("10.244.0.8", "", True), name="db-dup")))
    assert data(answer(catalog, f"db.default.{Z}", A)) == ["10.244.0.7", "10.244.0.8"]


def test_without_a_namespace_list_a_namespace_exists_when_it_has_services():
    c = Catalog()
    c.set_service(service_info(svc("web")))
    assert answer(c, f"default.{Z}", A).rcode == NOERROR
    assert answer(c, f"other.{Z}", A).rcode == NXDOMAIN


def test_another_cluster_domain():
    c = Catalog(domain="Example.Internal.")
    c.set_service(service_info(svc("web")))
    assert data(answer(c, "web.default.svc.example.internal", A)) == ["10.96.0.20"]
    assert answer(c, f"web.default.{Z}", A).forward
