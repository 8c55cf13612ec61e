"""Stale UDP conntrack entries: the pure choice (conntrack.stale), parsing the CLI's listing, and
the proxier clearing them after its syncs, against an in-memory conntrack table."""

from __future__ import annotations

import asyncio
import sys

from svcnet.agent.proxy import conntrack
from svcnet.agent.proxy import proxier as proxier_mod
from svcnet.agent.proxy.conntrack import Entry, parse, stale, udp_frontends
from svcnet.agent.proxy.proxier import Proxier
from svcnet.agent.proxy.ruleset import NodeInfo

NODE = NodeInfo("node-1", ("192.168.1.2",), "10.244.0.0/16", "10.96.0.0/12")
VIP, LB, NODE_IP, CLIENT = "10.96.0.53", "192.168.1.240", "192.168.1.2", "192.168.1.10"
OLD, NEW = "10.244.0.5", "10.244.0.6"


def service(ip=VIP, type="LoadBalancer", protocol="UDP"):
    return {"metadata": {"namespace": "default", "name": "dns", "resourceVersion": "1"},
            "spec": {"type": type, "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "dns", "port": 53, "protocol": protocol, "nodePort": 30053}]},
            "status": {"loadBalancer": {"ingress": [{"ip": LB}]}}}


def slice_(*ips, protocol="UDP", **conditions):
    return {"metadata": {"namespace": "default", "name": "dns-abc",
                         "labels": {"kubernetes.io/service-name": "dns"}},
            "addressType": "IPv4", "ports": [{"name": "dns", "port": 5353, "protocol": protocol}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, **conditions}} for ip in ips]}


def entry(dst, dport, reply_src, src=CLIENT, sport=40000):
    return Entry(src, dst, sport, dport, reply_src)


# --- the pure choice -------------------------------------------------------------------------

def test_frontends_are_every_udp_address_and_node_port_with_the_serving_endpoints():
    assert udp_frontends(service(), [slice_(OLD)]) == {
        (VIP, 53): {OLD}, (LB, 53): {OLD}, (None, 30053): {OLD}}
    assert udp_frontends(service(protocol="TCP"), [slice_(OLD, protocol="TCP")]) == {}
    terminating = slice_(OLD, ready=False, serving=True, terminating=True)
    assert udp_frontends(service(type="ClusterIP"), [terminating]) == {(VIP, 53): {OLD}}
    assert udp_frontends(service(type="ClusterIP"), [slice_(OLD, ready=False)]) == {(VIP, 53): frozenset()}


def test_entries_to_an_endpoint_that_stopped_serving_are_stale():
    entries = [entry(VIP, 53, OLD), entry(VIP, 53, NEW, sport=1), entry(LB, 53, OLD),
               entry(NODE_IP, 30053, OLD), entry(NODE_IP, 30053, NEW, sport=2),
               entry("10.96.0.99", 53, OLD), entry(NODE_IP, 22, NODE_IP)]
    frontends = udp_frontends(service(), [slice_(NEW)])
    assert stale(entries, frontends) == [entry(VIP, 53, OLD), entry(LB, 53, OLD), entry(NODE_IP, 30053, OLD)]


def test_with_zero_endpoints_every_entry_to_the_service_is_stale():
    """kube-proxy 1.32 skipped these (kubernetes/kubernetes#139628)."""
    frontends = udp_frontends(service(), [])
    assert stale([entry(VIP, 53, OLD), entry(NODE_IP, 30053, OLD)], frontends) == \
        [entry(VIP, 53, OLD), entry(NODE_IP, 30053, OLD)]


def test_entries_never_dnatted_to_a_frontend_that_now_serves_are_stale():
    frontends = udp_frontends(service(), [slice_(NEW)])
    assert stale([entry(VIP, 53, VIP)], frontends) == [entry(VIP, 53, VIP)]
    # e.g. a client that kept sending to a NodePort while no Service had it (port unreachable)
    assert stale([entry(NODE_IP, 30053, NODE_IP)], frontends) == [entry(NODE_IP, 30053, NODE_IP)]


def test_entries_to_a_deleted_service_are_stale_whatever_their_endpoint():
    gone = list(udp_frontends(service(), [slice_(OLD)]))
    assert stale([entry(VIP, 53, OLD), entry(NODE_IP, 30053, OLD), entry("10.96.0.9", 53, OLD)], {}, gone) == \
        [entry(VIP, 53, OLD), entry(NODE_IP, 30053, OLD)]


def test_parse_reads_the_conntrack_listing():
    listing = (
        "udp      17 29 src=192.168.1.10 dst=192.168.1.2 sport=44547 dport=30053 [UNREPLIED] "
        "src=10.244.0.5 dst=192.168.1.2 sport=5353 dport=12345 mark=0 use=1\n"
        "udp      17 117 src=10.244.0.9 dst=10.96.0.53 sport=5000 dport=53 src=10.244.0.5 "
        "dst=10.244.0.9 sport=5353 dport=5000 [ASSURED] mark=0 use=1\n"
        "tcp      6 117 ESTABLISHED src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1\n")
    assert parse(listing) == [Entry("192.168.1.10", "192.168.1.2", 44547, 30053, "10.244.0.5"),
                              Entry("10.244.0.9", "10.96.0.53", 5000, 53, "10.244.0.5")]


# --- the proxier clears them after its syncs -------------------------------------------------

class FakeConntrack:
    """An in-memory conntrack table with the CLI shell's interface."""

    def __init__(self, entries=()):
        self.entries = list(entries)
        self.listings = 0

    def list_udp(self):
        self.listings += 1
        return list(self.entries)

    def delete(self, dst, dport, reply_src):
        self.entries = [e for e in self.entries if (e.dst, e.dport, e.reply_src) != (dst, dport, reply_src)]


NFT_OK = [sys.executable, "-c", "import sys; sys.stdin.read()"]


def proxier(ct) -> Proxier:
    return Proxier(client=None, node=NODE, nft=tuple(NFT_OK), conntrack=ct, affinity_memory=lambda nft: {})


def change(p: Proxier, svc=None, slices=None):
    if svc is not None:
        p.services.cache["default/dns"] = svc
    if slices is not None:
        p.slices_by_service[("default", "dns")] = {s["metadata"]["name"]: s for s in slices}
    p._mark(("default", "dns"), None)
    asyncio.run(p.sync(full=False))


def test_the_proxier_clears_entries_of_a_replaced_pod_of_zero_endpoints_and_of_a_deleted_service():
    ct = FakeConntrack()
    p = proxier(ct)
    asyncio.run(p.sync(full=True))
    change(p, service(), [slice_(OLD)])
    ct.entries = [entry(VIP, 53, OLD), entry(NODE_IP, 30053, OLD, sport=1)]
    deleted = proxier_mod.STALE_CONNTRACK.value
    change(p, slices=[slice_(NEW)])                     # the pod was replaced
    assert ct.entries == [] and proxier_mod.STALE_CONNTRACK.value == deleted + 2
    ct.entries = [entry(VIP, 53, NEW)]
    change(p, slices=[])                                 # zero endpoints
    assert ct.entries == []
    change(p, slices=[slice_(NEW)])                      # and back
    ct.entries = [entry(VIP, 53, NEW)]
    del p.services.cache["default/dns"]                  # the Service is deleted
    change(p)
    assert ct.entries == []
    assert p.udp_frontends == {}


def test_syncs_that_change_no_udp_frontend_do_not_touch_conntrack():
    ct = FakeConntrack()
    p = proxier(ct)
    change(p, service(protocol="TCP"), [slice_(OLD, protocol="TCP")])
    change(p, slices=[slice_(NEW, protocol="TCP")])
    assert ct.listings == 0
    change(p, service(), [slice_(OLD)])
    listings = ct.listings
    change(p, service(), [slice_(OLD)])                  # no change at all
    assert ct.listings == listings == 1


def test_a_full_sync_at_start_clears_what_a_previous_agent_left_stale():
    ct = FakeConntrack([entry(VIP, 53, OLD)])
    p = proxier(ct)
    p.services.cache["default/dns"] = service()
    p.slices_by_service[("default", "dns")] = {"dns-abc": slice_(NEW)}
    asyncio.run(p.sync(full=True))
    assert ct.entries == []


def test_a_failing_conntrack_does_not_fail_the_sync(caplog):
    class Broken(FakeConntrack):
        def list_udp(self):
            raise OSError("conntrack -L failed: Operation not permitted")
    p = proxier(Broken())
    change(p, service(), [slice_(OLD)])
    assert p.synced.is_set() and "Operation not permitted" in caplog.text
    assert conntrack.clear(FakeConntrack(), {}, ()) == 0
