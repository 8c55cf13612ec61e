"""Service knobs of issue 5 in the ruleset, traced through the in-memory nftables (no root):
externalIPs and LoadBalancer ingress addresses, externalTrafficPolicy, internalTrafficPolicy,
loadBalancerSourceRanges, sessionAffinity ClientIP, and partial syncs between all of them.
tests/unit/test_proxy_kernel.py loads the same rulesets into a real kernel."""

from __future__ import annotations

import pytest

from svcnet.agent.proxy.model import Model, trace
from svcnet.agent.proxy.ruleset import NodeInfo, desired, full_transaction, partial_transaction

NODE_IP = "192.168.1.2"
NODE = NodeInfo("node-1", (NODE_IP,), "10.244.0.0/16", "10.96.0.0/12")
LAPTOP = "192.168.1.10"      # off-cluster client on the LAN
OTHER = "172.16.0.9"         # off-cluster client outside the LAN
POD = "10.244.0.99"          # a client pod on this node, no endpoint
LB_IP = "192.168.1.240"
EXT_IP = "192.168.1.99"
HERE = ("10.244.0.2", "10.244.0.3")    # endpoints on this node
THERE = ("10.244.1.2",)                # an endpoint on another node


def service(name="web", ip="10.96.0.10", type="LoadBalancer", ingress=(LB_IP,), node_port=30080,
            protocol="TCP", **spec):
    port = {"name": "http", "port": 80, "protocol": protocol}
    if type != "ClusterIP":
        port["nodePort"] = node_port
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"type": type, "clusterIP": ip, "clusterIPs": [ip], "ports": [port], **spec},
            "status": {"loadBalancer": {"ingress": [{"ip": i} for i in ingress]}}}


def endpoints(here=HERE, there=THERE, name="web", protocol="TCP", **conditions):
    eps = [{"addresses": [ip], "nodeName": node, "conditions": {"ready": True, **conditions}}
           for node, ips in (("node-1", here), ("node-2", there)) for ip in ips]
    return {"metadata": {"namespace": "default", "name": f"{name}-abc",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": protocol}],
            "endpoints": eps}


def load(services, slices) -> Model:
    model = Model()
    model.apply(full_transaction(desired(services, slices, NODE)))
    return model


def go(model, src, dst, dport=80, proto="tcp", hook=None):
    """The node holds LB_IP as a local address, as the announcer makes it (svcnet-lb0)."""
    hook = hook or ("output" if src == NODE_IP else "prerouting")
    return str(trace(model, src, dst, proto, dport, hook=hook, local_ips=[NODE_IP, LB_IP]))


ALL = "dnat one of 10.244.0.2:8080, 10.244.0.3:8080, 10.244.1.2:8080"
LOCAL = "dnat one of 10.244.0.2:8080, 10.244.0.3:8080"


# --- externalIPs and LoadBalancer ingress, externalTrafficPolicy Cluster --------------------

def test_lb_ingress_and_external_ips_are_balanced_over_all_endpoints_and_masqueraded():
    m = load([service(externalIPs=[EXT_IP])], [endpoints()])
    for dst in (LB_IP, EXT_IP):
        assert go(m, LAPTOP, dst) == f"{ALL} masquerade=True"
        assert go(m, POD, dst) == f"{ALL} masquerade=True"       # as kube-proxy: external chain
        assert go(m, NODE_IP, dst) == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, LB_IP, 81) == "reject"   # only Service ports on an LB address
    assert go(m, LAPTOP, NODE_IP, 30080) == f"{ALL} masquerade=True"   # NodePort still there
    assert go(m, POD, "10.96.0.10") == f"{ALL} masquerade=False"


def test_lb_ingress_is_ignored_unless_the_service_is_a_load_balancer_and_ip_mode_is_vip():
    s = service(type="NodePort")
    assert go(load([s], [endpoints()]), LAPTOP, LB_IP) == "accept local"   # not dispatched
    proxy_mode = service()
    proxy_mode["status"]["loadBalancer"]["ingress"] = [{"ip": LB_IP, "ipMode": "Proxy"}]
    assert go(load([proxy_mode], [endpoints()]), LAPTOP, LB_IP) == "reject"   # not dispatched: no port


def test_external_ips_work_on_cluster_ip_services_too():
    m = load([service(type="ClusterIP", ingress=(), externalIPs=[EXT_IP])], [endpoints()])
    assert go(m, LAPTOP, EXT_IP) == f"{ALL} masquerade=True"


def test_lb_ingress_on_the_nodes_own_address_serves_the_lb_port_and_leaves_node_ports_alone():
    """ServiceLB mode: the node's address is the ingress."""
    m = load([service(ingress=(NODE_IP,))], [endpoints()])
    assert go(m, LAPTOP, NODE_IP, 80) == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, NODE_IP, 30080) == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, NODE_IP, 22) == "accept local"
    assert go(m, NODE_IP, NODE_IP, 80) == f"{ALL} masquerade=True"
    assert go(m, "127.0.0.1", "127.0.0.1", 80) == "accept local"


def test_external_addresses_without_endpoints_reject():
    m = load([service(externalIPs=[EXT_IP])], [])
    for dst, port in ((LB_IP, 80), (EXT_IP, 80), (NODE_IP, 30080)):
        assert go(m, LAPTOP, dst, port) == "reject"
        assert go(m, POD, dst, port) == "reject"


def test_udp_load_balancer():
    m = load([service(protocol="UDP")], [endpoints(protocol="UDP")])
    assert go(m, LAPTOP, LB_IP, proto="udp") == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, LB_IP, proto="tcp") == "reject"
    assert go(m, LAPTOP, NODE_IP, 30080, proto="udp") == f"{ALL} masquerade=True"


# --- an LB address exposes only its Service ports -------------------------------------------
# The announcer makes LB_IP a local address of the node; whatever that address's Service ports
# do not dispatch must not reach the node's sockets (the API server on 6443, sshd, NodePorts).

def test_an_lb_address_rejects_every_other_port_and_has_no_node_ports():
    m = load([service(externalIPs=[EXT_IP])], [endpoints()])
    for src in (LAPTOP, POD, NODE_IP):
        assert go(m, src, LB_IP, 80) == f"{ALL} masquerade=True"
        for port, proto in ((6443, "tcp"), (22, "tcp"), (53, "udp"), (30080, "tcp"), (30080, "udp")):
            assert go(m, src, LB_IP, port, proto=proto) == "reject", (src, port, proto)
    assert trace(m, LAPTOP, LB_IP, "tcp", 6443, local_ips=[NODE_IP, LB_IP]).local is False
    # The node's own address keeps its sockets and its NodePorts; loopback is untouched.
    assert go(m, LAPTOP, NODE_IP, 30080) == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, NODE_IP, 6443) == "accept local"
    assert go(m, NODE_IP, NODE_IP, 6443) == "accept local"
    assert go(m, "127.0.0.1", "127.0.0.1", 6443, hook="output") == "accept local"
    # Ping still answers (only TCP, UDP and other transports are refused).
    assert go(m, LAPTOP, LB_IP, 0, proto="icmp") == "accept local"
    assert desired([service(externalIPs=[EXT_IP])], [endpoints()], NODE).elements["load-balancer-ips"] == \
        {LB_IP: None}   # externalIPs are not made local by svcnet: not filtered


def test_an_lb_address_without_endpoints_rejects_and_etp_local_still_drops():
    m = load([service()], [])
    for port in (80, 30080, 6443):
        assert go(m, LAPTOP, LB_IP, port) == "reject", port
    m = load([service(externalTrafficPolicy="Local")], [endpoints(here=())])
    assert go(m, LAPTOP, LB_IP, 80) == "drop"          # no local endpoint: as before
    assert go(m, LAPTOP, NODE_IP, 30080) == "drop"
    assert go(m, LAPTOP, LB_IP, 30080) == "reject"     # a NodePort does not exist there


def test_servicelb_mode_keeps_the_nodes_address_open():
    """The ingress is the node's own address: not an announced one, nothing is filtered."""
    state = desired([service(ingress=(NODE_IP,))], [endpoints()], NODE)
    assert state.elements["load-balancer-ips"] == {}
    m = load([service(ingress=(NODE_IP,))], [endpoints()])
    assert go(m, LAPTOP, NODE_IP, 6443) == "accept local"
    assert go(m, LAPTOP, NODE_IP, 30080) == f"{ALL} masquerade=True"


def test_an_lb_address_shared_by_two_services_exposes_the_ports_of_both():
    a = service("a", "10.96.0.10")
    b = service("b", "10.96.0.11", node_port=30081)
    b["spec"]["ports"][0]["port"] = 81
    m = load([a, b], [endpoints(name="a"), endpoints(name="b")])
    assert go(m, LAPTOP, LB_IP, 80) == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, LB_IP, 81) == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, LB_IP, 82) == "reject"
    old = desired([a, b], [endpoints(name="a"), endpoints(name="b")], NODE)
    new = desired([a], [endpoints(name="a")], NODE)
    m.apply(partial_transaction(old, new))   # b goes; the address is still a's
    assert go(m, LAPTOP, LB_IP, 80) == f"{ALL} masquerade=True"
    assert go(m, LAPTOP, LB_IP, 81) == "reject"


def test_a_new_lb_address_is_filtered_and_the_old_one_released_by_element_updates():
    old = desired([service()], [endpoints()], NODE)
    new = desired([service(ingress=("192.168.1.241",))], [endpoints()], NODE)
    text = partial_transaction(old, new).text()
    assert "delete element ip svcnet load-balancer-ips {\n\t192.168.1.240,\n}" in text
    assert "add element ip svcnet load-balancer-ips {\n\t192.168.1.241,\n}" in text
    assert all(line.startswith(("add element", "delete element", "\t", "}")) for line in text.splitlines())
    m = Model()
    m.apply(full_transaction(old))
    m.apply(partial_transaction(old, new))
    assert m.dump() == load([service(ingress=("192.168.1.241",))], [endpoints()]).dump()
    here = [NODE_IP, LB_IP, "192.168.1.241"]
    assert str(trace(m, LAPTOP, "192.168.1.241", "tcp", 6443, local_ips=here)) == "reject"
    assert str(trace(m, LAPTOP, LB_IP, "tcp", 6443, local_ips=here)) == "accept local"


# --- externalTrafficPolicy Local ------------------------------------------------------------

def test_etp_local_sends_external_traffic_to_local_endpoints_only_keeping_the_client_address():
    m = load([service(externalTrafficPolicy="Local", externalIPs=[EXT_IP])], [endpoints()])
    for dst, port in ((LB_IP, 80), (EXT_IP, 80), (NODE_IP, 30080)):
        assert go(m, LAPTOP, dst, port) == f"{LOCAL} masquerade=False"


def test_etp_local_pod_and_node_traffic_to_external_addresses_is_cluster_traffic():
    m = load([service(externalTrafficPolicy="Local")], [endpoints()])
    for dst, port in ((LB_IP, 80), (NODE_IP, 30080)):
        assert go(m, POD, dst, port) == f"{ALL} masquerade=False"
        assert go(m, NODE_IP, dst, port) == f"{ALL} masquerade=True"


def test_etp_local_without_local_endpoints_drops_external_traffic_but_not_pod_traffic():
    m = load([service(externalTrafficPolicy="Local")], [endpoints(here=())])
    for dst, port in ((LB_IP, 80), (NODE_IP, 30080)):
        assert go(m, LAPTOP, dst, port) == "drop"
        assert go(m, POD, dst, port) == "dnat 10.244.1.2:8080 masquerade=False"
    assert go(m, POD, "10.96.0.10") == "dnat 10.244.1.2:8080 masquerade=False"


def test_etp_local_uses_local_terminating_endpoints_when_no_local_one_is_ready():
    slice_ = endpoints(here=(), there=THERE)
    slice_["endpoints"].append({"addresses": ["10.244.0.7"], "nodeName": "node-1",
                                "conditions": {"ready": False, "serving": True, "terminating": True}})
    m = load([service(externalTrafficPolicy="Local")], [slice_])
    assert go(m, LAPTOP, LB_IP) == "dnat 10.244.0.7:8080 masquerade=False"
    assert go(m, POD, "10.96.0.10") == "dnat 10.244.1.2:8080 masquerade=False"


def test_etp_local_hairpin_is_still_masqueraded():
    m = load([service(externalTrafficPolicy="Local")], [endpoints(here=("10.244.0.2",), there=())])
    assert go(m, "10.244.0.2", LB_IP) == "dnat 10.244.0.2:8080 masquerade=True"


# --- internalTrafficPolicy Local ------------------------------------------------------------

def test_itp_local_sends_cluster_traffic_to_local_endpoints_only():
    m = load([service(type="ClusterIP", ingress=(), internalTrafficPolicy="Local")], [endpoints()])
    assert go(m, POD, "10.96.0.10") == f"{LOCAL} masquerade=False"
    assert go(m, NODE_IP, "10.96.0.10") == f"{LOCAL} masquerade=True"


def test_itp_local_without_local_endpoints_drops_but_without_any_endpoint_rejects():
    m = load([service(type="ClusterIP", ingress=(), internalTrafficPolicy="Local")], [endpoints(here=())])
    assert go(m, POD, "10.96.0.10") == "drop"
    assert go(m, NODE_IP, "10.96.0.10") == "drop"
    m = load([service(type="ClusterIP", ingress=(), internalTrafficPolicy="Local")], [])
    assert go(m, POD, "10.96.0.10") == "reject"


def test_itp_local_leaves_external_traffic_to_etp():
    m = load([service(internalTrafficPolicy="Local")], [endpoints(here=())])
    assert go(m, POD, "10.96.0.10") == "drop"
    assert go(m, LAPTOP, LB_IP) == "dnat 10.244.1.2:8080 masquerade=True"


# --- loadBalancerSourceRanges ---------------------------------------------------------------

def test_source_ranges_drop_lb_traffic_from_outside_them():
    m = load([service(loadBalancerSourceRanges=["192.168.1.0/28", "10.0.0.0/8"], externalIPs=[EXT_IP])],
             [endpoints()])
    assert go(m, LAPTOP, LB_IP) == f"{ALL} masquerade=True"             # 192.168.1.10 is inside
    assert go(m, OTHER, LB_IP) == "drop"
    assert go(m, "192.168.1.20", LB_IP) == "drop"
    assert go(m, OTHER, NODE_IP, 30080) == f"{ALL} masquerade=True"     # NodePorts are not subject
    assert go(m, OTHER, EXT_IP) == f"{ALL} masquerade=True"             # nor externalIPs
    assert go(m, OTHER, LB_IP, 81) == "reject"                # nor other ports


def test_source_ranges_allow_the_node_when_it_is_inside_them():
    m = load([service(loadBalancerSourceRanges=["192.168.1.0/24"])], [endpoints()])
    assert go(m, NODE_IP, LB_IP) == f"{ALL} masquerade=True"
    assert go(m, LB_IP, LB_IP, hook="output") == f"{ALL} masquerade=True"   # LB address as source
    m = load([service(loadBalancerSourceRanges=["10.0.0.0/8"])], [endpoints()])
    assert go(m, NODE_IP, LB_IP) == "drop"


def test_overlapping_and_sloppy_source_ranges_are_normalized():
    state = desired([service(loadBalancerSourceRanges=["10.0.0.0/8", "10.1.2.3/16", " 192.168.1.7/32 "])],
                    [endpoints()], NODE)
    assert set(state.elements["firewall-allow"]) == {f"{LB_IP} . tcp . 80 . 10.0.0.0/8",
                                                    f"{LB_IP} . tcp . 80 . 192.168.1.7/32"}


def test_source_ranges_change_in_a_partial_sync():
    old = desired([service(loadBalancerSourceRanges=["10.0.0.0/8"])], [endpoints()], NODE)
    new = desired([service(loadBalancerSourceRanges=["10.0.0.0/8", "192.168.1.0/24"])], [endpoints()], NODE)
    model = Model()
    model.apply(full_transaction(old))
    assert go(model, LAPTOP, LB_IP) == "drop"
    tx = partial_transaction(old, new)
    assert tx.text() == (f"add element ip svcnet firewall-allow {{\n\t{LB_IP} . tcp . 80 . 192.168.1.0/24,\n}}\n")
    model.apply(tx)
    assert go(model, LAPTOP, LB_IP) == f"{ALL} masquerade=True"


# --- sessionAffinity ClientIP ---------------------------------------------------------------

AFFINITY = {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}


@pytest.mark.parametrize("src,dst,port,masq", [
    (POD, "10.96.0.10", 80, False),
    (LAPTOP, LB_IP, 80, True),
    (LAPTOP, EXT_IP, 80, True),
    (LAPTOP, NODE_IP, 30080, True),
])
def test_client_ip_affinity_keeps_a_client_on_its_endpoint(src, dst, port, masq):
    m = load([service(externalIPs=[EXT_IP], **AFFINITY)], [endpoints()])
    first = trace(m, src, dst, "tcp", port, hook="prerouting", local_ips=[NODE_IP])
    assert str(first) == f"{ALL} masquerade={masq}"           # a new client: any endpoint
    chosen = next(o for o in first.outcomes if o.dnat == "10.244.0.3:8080")
    m.remember(chosen)                                        # the kernel records the pick
    assert go(m, src, dst, port) == f"dnat 10.244.0.3:8080 masquerade={masq}"
    assert go(m, "10.244.0.98", "10.96.0.10") == f"{ALL} masquerade=False"   # another client


def test_affinity_is_per_service_port_whatever_address_was_used():
    m = load([service(**AFFINITY)], [endpoints()])
    first = trace(m, LAPTOP, LB_IP, "tcp", 80, local_ips=[NODE_IP])
    m.remember(next(o for o in first.outcomes if o.dnat == "10.244.1.2:8080"))
    assert go(m, LAPTOP, NODE_IP, 30080) == "dnat 10.244.1.2:8080 masquerade=True"


def test_affinity_with_etp_local():
    m = load([service(externalTrafficPolicy="Local", **AFFINITY)], [endpoints()])
    assert go(m, LAPTOP, LB_IP) == f"{LOCAL} masquerade=False"
    assert go(m, POD, LB_IP) == f"{ALL} masquerade=False"
    assert go(m, NODE_IP, LB_IP) == f"{ALL} masquerade=True"
    m = load([service(externalTrafficPolicy="Local", **AFFINITY)], [endpoints(here=())])
    assert go(m, LAPTOP, LB_IP) == "drop"
    assert go(m, POD, LB_IP) == "dnat 10.244.1.2:8080 masquerade=False"


def pinned(state, endpoint: str) -> Model:
    """A model of `state` in which the laptop's first connection to the LB went to `endpoint`."""
    m = Model()
    m.apply(full_transaction(state))
    first = trace(m, LAPTOP, LB_IP, "tcp", 80, local_ips=[NODE_IP])
    m.remember(next(o for o in first.outcomes if o.dnat == endpoint))
    return m


def test_affinity_memory_of_a_removed_endpoint_goes_with_it():
    old = desired([service(**AFFINITY)], [endpoints()], NODE)
    m = pinned(old, "10.244.0.3:8080")
    new = desired([service(**AFFINITY)], [endpoints(here=("10.244.0.2",))], NODE)
    m.apply(partial_transaction(old, new))
    assert go(m, LAPTOP, LB_IP) == "dnat one of 10.244.0.2:8080, 10.244.1.2:8080 masquerade=True"


def test_affinity_objects_are_per_service_and_named_by_timeout():
    a = desired([service(**AFFINITY)], [endpoints()], NODE)
    assert len(a.sets) == 3 and all(s.timeout == 60 and s.flags == "dynamic,timeout" for s in a.sets.values())
    b = desired([service(sessionAffinity="ClientIP")], [endpoints()], NODE)
    assert set(b.sets).isdisjoint(a.sets) and {s.timeout for s in b.sets.values()} == {10800}
    plain = desired([service()], [endpoints()], NODE)
    assert plain.sets == {} and all(not n.startswith("aff-") for n in plain.chains)


# --- partial syncs between policies ---------------------------------------------------------

SERVICES = {
    "plain": service(),
    "external ips": service(externalIPs=[EXT_IP, "192.168.1.98"]),
    "no ingress yet": service(ingress=()),
    "etp local": service(externalTrafficPolicy="Local"),
    "itp local": service(internalTrafficPolicy="Local"),
    "affinity": service(**AFFINITY),
    "affinity etp local": service(externalTrafficPolicy="Local", **AFFINITY),
    "affinity other timeout": service(sessionAffinity="ClientIP"),
    "source ranges": service(loadBalancerSourceRanges=["10.0.0.0/8"]),
    "other source ranges": service(loadBalancerSourceRanges=["10.0.0.0/16", "192.168.1.0/24"]),
    "node port type": service(type="NodePort"),
    "other ingress": service(ingress=("192.168.1.241",)),
    "servicelb": service(ingress=(NODE_IP,)),
    "cluster ip type": service(type="ClusterIP"),
}
SLICES = {"all": [endpoints()], "local only": [endpoints(there=())], "remote only": [endpoints(here=())],
          "none": [], "one": [endpoints(here=("10.244.0.2",), there=())]}


@pytest.mark.parametrize("before", SERVICES)
@pytest.mark.parametrize("after", ["plain", "etp local", "affinity", "affinity etp local", "source ranges"])
def test_partial_sync_between_policies_ends_where_a_full_sync_would(before, after):
    for old_slices, new_slices in (("all", "all"), ("all", "remote only"), ("local only", "one"), ("none", "all")):
        old = desired([SERVICES[before]], SLICES[old_slices], NODE)
        new = desired([SERVICES[after]], SLICES[new_slices], NODE)
        model = Model()
        model.apply(full_transaction(old))
        tx = partial_transaction(old, new)
        if tx is not None:
            model.apply(tx)
        expected = Model()
        expected.apply(full_transaction(new))
        assert model.dump() == expected.dump(), (old_slices, new_slices)


# --- publishNotReadyAddresses ---------------------------------------------------------------

def test_publish_not_ready_addresses_reaches_not_ready_pods_through_the_endpointslice_controller():
    """As in Kubernetes, the EndpointSlice controller marks a not-ready pod's endpoint ready
    when the Service has publishNotReadyAddresses (serving stays false); the proxy then uses
    it like any ready endpoint. Without the flag, the Service rejects."""
    from svcnet.controllers.endpointslice import desired_slices

    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
           "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
           "status": {"phase": "Running", "podIP": "10.244.0.2", "podIPs": [{"ip": "10.244.0.2"}],
                      "conditions": [{"type": "Ready", "status": "False"}]}}
    nodes = {"node-1": {"metadata": {"name": "node-1"}}}
    for publish, expected in ((True, "dnat 10.244.0.2:8080 masquerade=False"), (False, "reject")):
        svc = service(type="ClusterIP", ingress=(), selector={"app": "web"}, ipFamilies=["IPv4"],
                      publishNotReadyAddresses=publish)
        svc["metadata"]["uid"] = "svc-uid"
        svc["spec"]["ports"][0]["targetPort"] = 8080
        slices = desired_slices(svc, [pod], nodes)
        conditions = [ep["conditions"] for s in slices for ep in s["endpoints"]]
        assert conditions == [{"ready": publish, "serving": False, "terminating": False}]
        for s in slices:
            s["metadata"].setdefault("name", "web-x")
        assert go(load([svc], slices), POD, "10.96.0.10") == expected


# --- golden: what an LB Service with eTP Local and source ranges, and a NodePort Service with
# affinity, add to the table (the skeleton and empty containers left out) ---------------------

POLICY_GOLDEN = """\
table ip svcnet {
	set aff-dkgrzcbg-10.244.0.2-8080 {
		typeof ip saddr
		flags dynamic,timeout
		timeout 60s
	}
	set aff-dkgrzcbg-10.244.1.3-8080 {
		typeof ip saddr
		flags dynamic,timeout
		timeout 60s
	}
	set cluster-ips {
		type ipv4_addr
		elements = {
			10.96.0.10,
			10.96.0.11,
		}
	}
	map endpoints-tcp {
		typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport
		elements = {
			10.96.0.10 . 80 . 0 : 10.244.0.2 . 8080,
			10.96.0.10 . 80 . 1 : 10.244.0.3 . 8080,
			10.96.0.10 . 80 . 2 : 10.244.1.2 . 8080,
			192.168.1.240 . 80 . 0 : 10.244.0.2 . 8080,
			192.168.1.240 . 80 . 1 : 10.244.0.3 . 8080,
			192.168.1.240 . 80 . 2 : 10.244.1.2 . 8080,
		}
	}
	map external-cluster {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = {
			192.168.1.240 . tcp . 80 : goto ep-tcp-3,
		}
	}
	set firewall-allow {
		type ipv4_addr . inet_proto . inet_service . ipv4_addr
		flags interval
		elements = {
			192.168.1.240 . tcp . 80 . 10.0.0.0/8,
		}
	}
	set firewall-ips {
		type ipv4_addr . inet_proto . inet_service
		elements = {
			192.168.1.240 . tcp . 80,
		}
	}
	set hairpin {
		type ipv4_addr . ipv4_addr
		elements = {
			10.244.0.2 . 10.244.0.2,
			10.244.0.3 . 10.244.0.3,
		}
	}
	set load-balancer-ips {
		type ipv4_addr
		elements = {
			192.168.1.240,
		}
	}
	map local-endpoints-tcp {
		typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport
		elements = {
			192.168.1.240 . 80 . 0 : 10.244.0.2 . 8080,
			192.168.1.240 . 80 . 1 : 10.244.0.3 . 8080,
		}
	}
	map nodeport-cluster {
		type inet_proto . inet_service : verdict
		elements = {
			tcp . 30080 : goto nc-tcp-3,
		}
	}
	map nodeport-endpoints-tcp {
		typeof tcp dport . numgen random mod 1 : ip daddr . tcp dport
		elements = {
			30080 . 0 : 10.244.0.2 . 8080,
			30080 . 1 : 10.244.0.3 . 8080,
			30080 . 2 : 10.244.1.2 . 8080,
		}
	}
	map nodeport-local-endpoints-tcp {
		typeof tcp dport . numgen random mod 1 : ip daddr . tcp dport
		elements = {
			30080 . 0 : 10.244.0.2 . 8080,
			30080 . 1 : 10.244.0.3 . 8080,
		}
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = {
			10.96.0.10 . tcp . 80 : goto ep-tcp-3,
			10.96.0.11 . tcp . 80 : goto aff-dkgrzcbg-cluster,
			192.168.1.240 . tcp . 80 : goto xl-tcp-2,
		}
	}
	map service-nodeports {
		type inet_proto . inet_service : verdict
		elements = {
			tcp . 30080 : goto nl-tcp-2,
			tcp . 30081 : goto aff-dkgrzcbg-external,
		}
	}
	chain aff-dkgrzcbg-cluster {
		ip saddr @aff-dkgrzcbg-10.244.0.2-8080 update @aff-dkgrzcbg-10.244.0.2-8080 { ip saddr } meta l4proto tcp dnat ip to 10.244.0.2:8080
		ip saddr @aff-dkgrzcbg-10.244.1.3-8080 update @aff-dkgrzcbg-10.244.1.3-8080 { ip saddr } meta l4proto tcp dnat ip to 10.244.1.3:8080
		numgen random mod 2 == 0 update @aff-dkgrzcbg-10.244.0.2-8080 { ip saddr } meta l4proto tcp dnat ip to 10.244.0.2:8080
		update @aff-dkgrzcbg-10.244.1.3-8080 { ip saddr } meta l4proto tcp dnat ip to 10.244.1.3:8080
	}
	chain aff-dkgrzcbg-external {
		meta mark set meta mark or 0x4000 goto aff-dkgrzcbg-cluster
	}
	chain ep-tcp-3 {
		dnat ip to ip daddr . tcp dport . numgen random mod 3 map @endpoints-tcp
	}
	chain nc-tcp-3 {
		dnat ip to tcp dport . numgen random mod 3 map @nodeport-endpoints-tcp
	}
	chain nl-tcp-2 {
		ip saddr 10.244.0.0/16 meta l4proto . th dport vmap @nodeport-cluster
		fib saddr type local meta mark set meta mark or 0x4000 meta l4proto . th dport vmap @nodeport-cluster
		dnat ip to tcp dport . numgen random mod 2 map @nodeport-local-endpoints-tcp
	}
	chain xl-tcp-2 {
		ip saddr 10.244.0.0/16 ip daddr . meta l4proto . th dport vmap @external-cluster
		fib saddr type local meta mark set meta mark or 0x4000 ip daddr . meta l4proto . th dport vmap @external-cluster
		dnat ip to ip daddr . tcp dport . numgen random mod 2 map @local-endpoints-tcp
	}
}
"""


def test_golden_dump_of_policy_elements_and_chains():
    from svcnet.agent.proxy.ruleset import BASE_CHAINS, FIXED_CHAINS
    m = load([service(externalTrafficPolicy="Local", loadBalancerSourceRanges=["10.0.0.0/8"]),
              service("sticky", "10.96.0.11", type="NodePort", ingress=(), node_port=30081, **AFFINITY)],
             [endpoints(), endpoints(here=("10.244.0.2",), there=("10.244.1.3",), name="sticky")])
    assert m.dump(skip_chains={c.name for c in BASE_CHAINS} | set(FIXED_CHAINS), skip_empty=True) == POLICY_GOLDEN


@pytest.mark.parametrize("name", SERVICES)
def test_every_chain_and_set_of_a_state_is_used_and_every_reference_resolves(name):
    import re
    for slices in SLICES.values():
        state = desired([SERVICES[name]], slices, NODE)
        text = " ".join(v or "" for elems in state.elements.values() for v in elems.values())
        rules = " ".join(r for rs in state.chains.values() for r in rs)
        targets = set(re.findall(r"goto (\S+?)[,\s}]", text + " " + rules + " "))
        assert targets - {"reject-chain"} <= set(state.chains), name
        assert set(state.chains) <= targets, (name, set(state.chains) - targets)
        assert set(state.sets) == set(re.findall(r"@(aff-\S+)", rules)), name


def test_a_full_sync_writes_back_what_the_kernel_remembered_for_affinity():
    state = desired([service(**AFFINITY)], [endpoints()], NODE)
    m = pinned(state, "10.244.1.2:8080")
    remembered = {name: dict.fromkeys(elems, 42) for name, elems in
                  ((n, m.elements(n)) for n in state.sets) if elems}
    remembered["aff-gone-10.244.9.9-80"] = {"192.168.1.77": 50}   # a set the new state lacks
    tx = full_transaction(state, remembered)
    assert f"\t{LAPTOP} expires 42s,\n" in tx.text() and "192.168.1.77" not in tx.text()
    m.apply(tx)
    assert go(m, LAPTOP, LB_IP) == "dnat 10.244.1.2:8080 masquerade=True"
    fresh = Model()
    fresh.apply(full_transaction(state))
    assert go(fresh, LAPTOP, LB_IP) == f"{ALL} masquerade=True"


def test_affinity_picks_a_new_clients_endpoint_uniformly():
    """Rule k of the random pick matches with probability 1/(N-k) when reached: 1/N each."""
    from fractions import Fraction
    import re
    state = desired([service(**AFFINITY)], [endpoints(here=("10.244.0.2", "10.244.0.3", "10.244.0.4"),
                                                      there=("10.244.1.2",))], NODE)
    [chain] = [rules for name, rules in state.chains.items() if name.endswith("-cluster")]
    picks = [r for r in chain if not r.startswith("ip saddr @")]
    reach, chances = Fraction(1), []
    for rule in picks:
        m = re.match(r"numgen random mod (\d+) == 0 ", rule)
        p = Fraction(1, int(m[1])) if m else Fraction(1)
        chances.append(reach * p)
        reach *= 1 - p
    assert chances == [Fraction(1, 4)] * 4 and reach == 0
    assert [r.rsplit(" ", 1)[1] for r in picks] == ["10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080",
                                                    "10.244.1.2:8080"]
