"""Service proxy ruleset: golden dumps, packet traces through the in-memory nftables, partial syncs.

No root: everything runs against svcnet.agent.proxy.model. tests/unit/test_proxy_kernel.py loads
the same transactions into a real kernel.
"""

from __future__ import annotations

import textwrap

import pytest

from svcnet.agent.proxy.model import Model, trace
from svcnet.agent.proxy.nft import Chain, Elements, Map, NftError, Rule, Table, Transaction
from svcnet.agent.proxy.ruleset import (
    NodeInfo,
    ServicePortKey,
    State,
    desired,
    full_transaction,
    partial_transaction,
)

NODE = NodeInfo("node-1", ("192.168.1.2",), "10.244.0.0/16", "10.96.0.0/12")
NODE_IP = "192.168.1.2"
LAPTOP = "192.168.1.10"   # off-cluster client
POD = "10.244.0.99"       # a client pod that is no endpoint


def svc(name, cluster_ip, *ports, type="ClusterIP", ns="default", **spec):
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"type": type, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ports": list(ports), **spec}}


def port(port, name="", protocol="TCP", node_port=None):
    p = {"name": name, "port": port, "protocol": protocol}
    if node_port:
        p["nodePort"] = node_port
    return p


def ep(ip, ready=None, serving=None, terminating=None, node="node-1"):
    conditions = {k: v for k, v in (("ready", ready), ("serving", serving),
                                    ("terminating", terminating)) if v is not None}
    return {"addresses": [ip], "conditions": conditions, "nodeName": node}


def eps(service, ports, *endpoints, ns="default", name=None, address_type="IPv4"):
    """An EndpointSlice; ports are (name, port, protocol)."""
    return {"metadata": {"namespace": ns, "name": name or f"{service}-abc",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": address_type,
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            "endpoints": list(endpoints)}


def load(services, slices, node=NODE) -> tuple[State, Model]:
    state = desired(services, slices, node)
    model = Model()
    model.apply(full_transaction(state))
    return state, model


def go(model, src, dst, dport, proto="tcp", hook="prerouting"):
    return str(trace(model, src, dst, proto, dport, hook=hook, local_ips=[NODE_IP]))


WEB = svc("web", "10.96.0.10", port(80, "http", node_port=30080), type="NodePort")
WEB_EPS = eps("web", [("http", 8080, "TCP")], ep("10.244.0.2", True), ep("10.244.0.3"), ep("10.244.0.4", True))
DNS = svc("kube-dns", "10.96.0.53", port(53, "dns", "UDP"), port(53, "dns-tcp", "TCP"), ns="kube-system")
DNS_EPS = eps("kube-dns", [("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP")], ep("10.244.0.7", True),
              ns="kube-system")
EMPTY = svc("empty", "10.96.0.20", port(80))


@pytest.fixture
def cluster():
    return load([WEB, DNS, EMPTY], [WEB_EPS, DNS_EPS])


# --- golden --------------------------------------------------------------------------------

GOLDEN = """\
table ip svcnet {
	set cluster-ips {
		type ipv4_addr
		elements = {
			10.96.0.10,
			10.96.0.20,
			10.96.0.53,
		}
	}
	map endpoints-tcp {
		typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport
		elements = {
			10.96.0.10 . 80 . 0 : 10.244.0.2 . 8080,
			10.96.0.10 . 80 . 1 : 10.244.0.3 . 8080,
			10.96.0.10 . 80 . 2 : 10.244.0.4 . 8080,
			10.96.0.53 . 53 . 0 : 10.244.0.7 . 5353,
		}
	}
	map endpoints-udp {
		typeof ip daddr . udp dport . numgen random mod 1 : ip daddr . udp dport
		elements = {
			10.96.0.53 . 53 . 0 : 10.244.0.7 . 5353,
		}
	}
	map external-cluster {
		type ipv4_addr . inet_proto . inet_service : verdict
	}
	set firewall-allow {
		type ipv4_addr . inet_proto . inet_service . ipv4_addr
		flags interval
	}
	set firewall-ips {
		type ipv4_addr . inet_proto . inet_service
	}
	set hairpin {
		type ipv4_addr . ipv4_addr
		elements = {
			10.244.0.2 . 10.244.0.2,
			10.244.0.3 . 10.244.0.3,
			10.244.0.4 . 10.244.0.4,
			10.244.0.7 . 10.244.0.7,
		}
	}
	set load-balancer-ips {
		type ipv4_addr
	}
	map local-endpoints-tcp {
		typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport
	}
	map local-endpoints-udp {
		typeof ip daddr . udp dport . numgen random mod 1 : ip daddr . udp dport
	}
	map no-endpoint-nodeports {
		type inet_proto . inet_service : verdict
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = {
			10.96.0.20 . tcp . 80 : goto reject-chain,
		}
	}
	map nodeport-cluster {
		type inet_proto . inet_service : verdict
	}
	map nodeport-endpoints-tcp {
		typeof tcp dport . numgen random mod 1 : ip daddr . tcp dport
		elements = {
			30080 . 0 : 10.244.0.2 . 8080,
			30080 . 1 : 10.244.0.3 . 8080,
			30080 . 2 : 10.244.0.4 . 8080,
		}
	}
	map nodeport-endpoints-udp {
		typeof udp dport . numgen random mod 1 : ip daddr . udp dport
	}
	map nodeport-local-endpoints-tcp {
		typeof tcp dport . numgen random mod 1 : ip daddr . tcp dport
	}
	map nodeport-local-endpoints-udp {
		typeof udp dport . numgen random mod 1 : ip daddr . udp dport
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = {
			10.96.0.10 . tcp . 80 : goto ep-tcp-3,
			10.96.0.53 . tcp . 53 : goto ep-tcp-1,
			10.96.0.53 . udp . 53 : goto ep-udp-1,
		}
	}
	map service-nodeports {
		type inet_proto . inet_service : verdict
		elements = {
			tcp . 30080 : goto np-tcp-3,
		}
	}
	chain cluster-ips-check {
		ip daddr @cluster-ips reject
		ip daddr 10.96.0.0/12 drop
	}
	chain ep-tcp-1 {
		dnat ip to ip daddr . tcp dport . numgen random mod 1 map @endpoints-tcp
	}
	chain ep-tcp-3 {
		dnat ip to ip daddr . tcp dport . numgen random mod 3 map @endpoints-tcp
	}
	chain ep-udp-1 {
		dnat ip to ip daddr . udp dport . numgen random mod 1 map @endpoints-udp
	}
	chain filter-forward {
		type filter hook forward priority -110; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump cluster-ips-check
	}
	chain filter-input {
		type filter hook input priority -110; policy accept;
		ct state new jump nodeport-endpoints-check
		ct state new jump service-endpoints-check
		ct state new ip daddr @load-balancer-ips meta l4proto != icmp reject
	}
	chain filter-output {
		type filter hook output priority -110; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump firewall-check
	}
	chain filter-output-post-dnat {
		type filter hook output priority -90; policy accept;
		ct state new jump cluster-ips-check
	}
	chain filter-prerouting {
		type filter hook prerouting priority -110; policy accept;
		ct state new jump firewall-check
	}
	chain firewall-check {
		ip daddr . meta l4proto . th dport @firewall-ips ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow drop
	}
	chain masquerading {
		ct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark or 0x4000
		meta mark & 0x4000 == 0 return
		meta mark set meta mark xor 0x4000
		masquerade fully-random
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump masquerading
	}
	chain nat-prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump services
	}
	chain nodeport-endpoints-check {
		ip daddr != 127.0.0.0/8 ip daddr != @load-balancer-ips meta l4proto . th dport vmap @no-endpoint-nodeports
	}
	chain np-tcp-3 {
		meta mark set meta mark or 0x4000
		dnat ip to tcp dport . numgen random mod 3 map @nodeport-endpoints-tcp
	}
	chain reject-chain {
		reject
	}
	chain service-endpoints-check {
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}
	chain services {
		ip saddr != 10.244.0.0/16 ip daddr @cluster-ips meta mark set meta mark or 0x4000
		ip daddr . meta l4proto . th dport vmap @service-ips
		fib daddr type local ip daddr != 127.0.0.0/8 ip daddr != @load-balancer-ips meta l4proto . th dport vmap @service-nodeports
	}
}
"""


def test_golden_dump(cluster):
    _, model = cluster
    assert model.dump() == GOLDEN


def test_full_transaction_replaces_the_table_in_one_transaction(cluster):
    state, _ = cluster
    lines = full_transaction(state).text().splitlines()
    assert lines[:3] == ["add table ip svcnet", "delete table ip svcnet", "add table ip svcnet"]
    assert "add element ip svcnet service-ips {" in lines
    assert "\t10.96.0.10 . tcp . 80 : goto ep-tcp-3," in lines


def test_full_sync_is_repeatable_and_replaces_everything(cluster):
    state, model = cluster
    model.apply(full_transaction(state))
    assert model.dump() == GOLDEN
    model.apply(full_transaction(desired([], [], NODE)))
    assert model.elements("service-ips") == {} and model.elements("hairpin") == {}
    assert "ep-tcp-3" not in model.dump()


# --- traces: ClusterIP ---------------------------------------------------------------------

def test_cluster_ip_from_a_pod_reaches_one_of_the_ready_pods_without_masquerade(cluster):
    _, m = cluster
    assert go(m, POD, "10.96.0.10", 80) == \
        "dnat one of 10.244.0.2:8080, 10.244.0.3:8080, 10.244.0.4:8080 masquerade=False"


def test_cluster_ip_from_off_cluster_is_masqueraded(cluster):
    _, m = cluster
    assert go(m, LAPTOP, "10.96.0.10", 80) == \
        "dnat one of 10.244.0.2:8080, 10.244.0.3:8080, 10.244.0.4:8080 masquerade=True"


def test_cluster_ip_from_the_node_itself_is_masqueraded(cluster):
    _, m = cluster
    assert go(m, NODE_IP, "10.96.0.10", 80, hook="output") == \
        "dnat one of 10.244.0.2:8080, 10.244.0.3:8080, 10.244.0.4:8080 masquerade=True"


def test_pod_reaching_itself_through_its_service_is_masqueraded_hairpin(cluster):
    _, m = cluster
    r = trace(m, "10.244.0.3", "10.96.0.10", "tcp", 80, local_ips=[NODE_IP])
    assert str(r) == ("dnat 10.244.0.3:8080 masquerade=True"
                      " | dnat one of 10.244.0.2:8080, 10.244.0.4:8080 masquerade=False")
    assert r.verdict == "dnat" and r.masquerade is None


def test_udp_service(cluster):
    _, m = cluster
    assert go(m, POD, "10.96.0.53", 53, proto="udp") == "dnat 10.244.0.7:5353 masquerade=False"
    assert go(m, POD, "10.96.0.53", 53, proto="tcp") == "dnat 10.244.0.7:5353 masquerade=False"


def test_service_without_endpoints_rejects(cluster):
    _, m = cluster
    assert go(m, POD, "10.96.0.20", 80) == "reject"
    assert go(m, NODE_IP, "10.96.0.20", 80, hook="output") == "reject"


def test_live_cluster_ip_on_an_unknown_port_rejects(cluster):
    _, m = cluster
    assert go(m, POD, "10.96.0.10", 81) == "reject"
    assert go(m, POD, "10.96.0.10", 80, proto="udp") == "reject"
    assert go(m, NODE_IP, "10.96.0.10", 81, hook="output") == "reject"


def test_unallocated_ip_in_the_service_cidr_is_dropped(cluster):
    _, m = cluster
    assert go(m, POD, "10.96.0.11", 80) == "drop"
    assert go(m, NODE_IP, "10.111.255.254", 80, hook="output") == "drop"


def test_traffic_outside_the_service_cidr_is_untouched(cluster):
    _, m = cluster
    assert go(m, POD, "10.244.0.2", 8080) == "accept unchanged"
    assert go(m, POD, "10.112.0.1", 80) == "accept unchanged"


# --- traces: NodePort ----------------------------------------------------------------------

def test_nodeport_on_the_node_ip_reaches_an_endpoint_masqueraded(cluster):
    _, m = cluster
    assert go(m, LAPTOP, NODE_IP, 30080) == \
        "dnat one of 10.244.0.2:8080, 10.244.0.3:8080, 10.244.0.4:8080 masquerade=True"
    assert go(m, NODE_IP, NODE_IP, 30080, hook="output") == \
        "dnat one of 10.244.0.2:8080, 10.244.0.3:8080, 10.244.0.4:8080 masquerade=True"


def test_nodeport_on_localhost_is_untouched(cluster):
    _, m = cluster
    assert go(m, "127.0.0.1", "127.0.0.1", 30080, hook="output") == "accept local"


def test_nodeport_on_another_address_or_port_is_untouched(cluster):
    _, m = cluster
    assert go(m, LAPTOP, "192.168.1.3", 30080) == "accept unchanged"   # not this node
    assert go(m, LAPTOP, NODE_IP, 30081) == "accept local"
    assert go(m, LAPTOP, NODE_IP, 30080, proto="udp") == "accept local"


def test_nodeport_without_endpoints_rejects():
    _, m = load([svc("web", "10.96.0.10", port(80, node_port=30080), type="NodePort")], [])
    assert go(m, LAPTOP, NODE_IP, 30080) == "reject"
    assert go(m, "127.0.0.1", "127.0.0.1", 30080, hook="output") == "accept local"


def test_load_balancer_services_get_their_node_ports():
    lb = svc("lb", "10.96.0.30", port(443, node_port=31443), type="LoadBalancer")
    _, m = load([lb], [eps("lb", [("", 8443, "TCP")], ep("10.244.0.5"))])
    assert go(m, LAPTOP, NODE_IP, 31443) == "dnat 10.244.0.5:8443 masquerade=True"


def test_cluster_ip_services_get_no_node_ports_even_if_the_field_is_set():
    s = svc("web", "10.96.0.10", port(80, node_port=30080))
    _, m = load([s], [eps("web", [("", 80, "TCP")], ep("10.244.0.5"))])
    assert go(m, LAPTOP, NODE_IP, 30080) == "accept local"


# --- endpoint selection --------------------------------------------------------------------

def endpoints_of(services, slices, ip="10.96.0.10", protocol="tcp", port=80):
    return desired(services, slices, NODE).endpoints(ServicePortKey(ip, protocol, port))


S80 = svc("web", "10.96.0.10", port(80, "http"))


def test_ready_unset_counts_as_ready_and_not_ready_is_left_out():
    slices = [eps("web", [("http", 8080, "TCP")], ep("10.244.0.3"), ep("10.244.0.2", ready=False),
                  ep("10.244.0.4", ready=True))]
    assert endpoints_of([S80], slices) == (("10.244.0.3", 8080), ("10.244.0.4", 8080))


def test_only_terminating_serving_endpoints_are_used_when_none_is_ready():
    slices = [eps("web", [("http", 8080, "TCP")],
                  ep("10.244.0.2", ready=False, serving=True, terminating=True),
                  ep("10.244.0.3", ready=False, serving=False, terminating=True),
                  ep("10.244.0.4", ready=False))]
    assert endpoints_of([S80], slices) == (("10.244.0.2", 8080),)
    _, m = load([S80], slices)
    assert go(m, POD, "10.96.0.10", 80) == "dnat 10.244.0.2:8080 masquerade=False"


def test_terminating_endpoints_are_not_used_while_any_is_ready():
    slices = [eps("web", [("http", 8080, "TCP")],
                  ep("10.244.0.2", ready=False, serving=True, terminating=True), ep("10.244.0.3"))]
    assert endpoints_of([S80], slices) == (("10.244.0.3", 8080),)


def test_target_port_is_resolved_per_slice_by_port_name():
    multi = svc("web", "10.96.0.10", port(80, "http"), port(443, "https"))
    slices = [eps("web", [("http", 8080, "TCP"), ("https", 8443, "TCP")], ep("10.244.0.2"), name="a"),
              eps("web", [("http", 9090, "TCP")], ep("10.244.0.3"), name="b")]
    assert endpoints_of([multi], slices) == (("10.244.0.2", 8080), ("10.244.0.3", 9090))
    assert endpoints_of([multi], slices, port=443) == (("10.244.0.2", 8443),)


def test_an_address_in_two_slices_counts_once():
    slices = [eps("web", [("http", 8080, "TCP")], ep("10.244.0.2"), name="a"),
              eps("web", [("http", 8080, "TCP")], ep("10.244.0.2", ready=False), ep("10.244.0.3"), name="b")]
    assert endpoints_of([S80], slices) == (("10.244.0.2", 8080), ("10.244.0.3", 8080))


def test_slices_of_other_namespaces_services_and_families_are_ignored():
    slices = [eps("web", [("http", 8080, "TCP")], ep("10.244.0.2"), ns="other"),
              eps("web2", [("http", 8080, "TCP")], ep("10.244.0.3")),
              eps("web", [("http", 8080, "TCP")], ep("fd00::3"), address_type="IPv6"),
              eps("web", [("http", 8080, "UDP")], ep("10.244.0.4"))]
    assert endpoints_of([S80], slices) == ()
    assert desired([S80], slices, NODE).elements["no-endpoint-services"] == \
        {"10.96.0.10 . tcp . 80": "goto reject-chain"}


def test_external_name_headless_and_sctp_get_no_rules():
    services = [
        {"metadata": {"namespace": "default", "name": "ext"},
         "spec": {"type": "ExternalName", "externalName": "example.com"}},
        svc("headless", "None", port(80)),
        svc("sctp", "10.96.0.40", port(9999, protocol="SCTP")),
    ]
    state = desired(services, [eps("headless", [("", 80, "TCP")], ep("10.244.0.2"))], NODE)
    assert {k: v for k, v in state.elements.items() if v} == {"cluster-ips": {"10.96.0.40": None}}
    assert state.chains == {}


def test_only_endpoints_on_this_node_can_hairpin_here():
    slices = [eps("web", [("http", 8080, "TCP")], ep("10.244.0.2"), ep("10.244.1.2", node="node-2"),
                  {"addresses": ["10.244.9.9"]})]
    assert desired([S80], slices, NODE).elements["hairpin"] == \
        {"10.244.0.2 . 10.244.0.2": None, "10.244.9.9 . 10.244.9.9": None}


# --- partial syncs -------------------------------------------------------------------------

def web_slice(*ips):
    return eps("web", [("http", 8080, "TCP")], *(ep(ip) for ip in ips))


def test_nothing_changed_means_no_transaction(cluster):
    state, _ = cluster
    assert partial_transaction(state, desired([WEB, DNS, EMPTY], [WEB_EPS, DNS_EPS], NODE)) is None


def test_endpoint_removed_deletes_its_elements_and_repoints_the_service_to_the_smaller_chain():
    old, model = load([WEB], [web_slice("10.244.0.2", "10.244.0.3", "10.244.0.4")])
    new = desired([WEB], [web_slice("10.244.0.2", "10.244.0.3")], NODE)
    tx = partial_transaction(old, new)
    assert tx.text() == textwrap.dedent("""\
        add chain ip svcnet ep-tcp-2
        add chain ip svcnet np-tcp-2
        add rule ip svcnet ep-tcp-2 dnat ip to ip daddr . tcp dport . numgen random mod 2 map @endpoints-tcp
        add rule ip svcnet np-tcp-2 meta mark set meta mark or 0x4000
        add rule ip svcnet np-tcp-2 dnat ip to tcp dport . numgen random mod 2 map @nodeport-endpoints-tcp
        delete element ip svcnet service-ips {
        \t10.96.0.10 . tcp . 80,
        }
        delete element ip svcnet service-nodeports {
        \ttcp . 30080,
        }
        delete element ip svcnet hairpin {
        \t10.244.0.4 . 10.244.0.4,
        }
        delete element ip svcnet endpoints-tcp {
        \t10.96.0.10 . 80 . 2,
        }
        delete element ip svcnet nodeport-endpoints-tcp {
        \t30080 . 2,
        }
        add element ip svcnet service-ips {
        \t10.96.0.10 . tcp . 80 : goto ep-tcp-2,
        }
        add element ip svcnet service-nodeports {
        \ttcp . 30080 : goto np-tcp-2,
        }
        delete chain ip svcnet ep-tcp-3
        delete chain ip svcnet np-tcp-3
        """)
    model.apply(tx)
    assert go(model, POD, "10.96.0.10", 80) == "dnat one of 10.244.0.2:8080, 10.244.0.3:8080 masquerade=False"
    assert go(model, LAPTOP, NODE_IP, 30080) == "dnat one of 10.244.0.2:8080, 10.244.0.3:8080 masquerade=True"


def test_removing_a_middle_endpoint_moves_the_later_ones_down_one_index():
    old, model = load([S80], [web_slice("10.244.0.2", "10.244.0.3", "10.244.0.4")])
    new = desired([S80], [web_slice("10.244.0.2", "10.244.0.4")], NODE)
    text = partial_transaction(old, new).text()
    assert "delete element ip svcnet endpoints-tcp {\n\t10.96.0.10 . 80 . 1,\n\t10.96.0.10 . 80 . 2,\n}" in text
    assert "add element ip svcnet endpoints-tcp {\n\t10.96.0.10 . 80 . 1 : 10.244.0.4 . 8080,\n}" in text
    model.apply(partial_transaction(old, new))
    assert go(model, POD, "10.96.0.10", 80) == "dnat one of 10.244.0.2:8080, 10.244.0.4:8080 masquerade=False"


# (old, new) pairs of (services, slices)
TRANSITIONS = {
    "first endpoint appears": (([EMPTY], []), ([EMPTY], [eps("empty", [("", 80, "TCP")], ep("10.244.0.9"))])),
    "last endpoint goes": (([WEB], [WEB_EPS]), ([WEB], [])),
    "service deleted": (([WEB, DNS, EMPTY], [WEB_EPS, DNS_EPS]), ([DNS], [DNS_EPS])),
    "service added": (([DNS], [DNS_EPS]), ([WEB, DNS, EMPTY], [WEB_EPS, DNS_EPS])),
    "scale up": (([WEB], [web_slice("10.244.0.2")]), ([WEB], [web_slice(*(f"10.244.0.{i}" for i in range(2, 12)))])),
    "port renumbered": (([S80], [web_slice("10.244.0.2")]),
                        ([svc("web", "10.96.0.10", port(81, "http"))], [web_slice("10.244.0.2")])),
    "nodeport changed": (([WEB], [WEB_EPS]),
                         ([svc("web", "10.96.0.10", port(80, "http", node_port=30081), type="NodePort")], [WEB_EPS])),
    "endpoint starts terminating": (([S80], [web_slice("10.244.0.2", "10.244.0.3")]),
                                    ([S80], [eps("web", [("http", 8080, "TCP")], ep("10.244.0.3"),
                                                  ep("10.244.0.2", False, True, True))])),
}


@pytest.mark.parametrize("name", TRANSITIONS)
def test_partial_sync_ends_where_a_full_sync_would(name):
    (old_svcs, old_slices), (new_svcs, new_slices) = TRANSITIONS[name]
    old, model = load(old_svcs, old_slices)
    new = desired(new_svcs, new_slices, NODE)
    model.apply(partial_transaction(old, new))
    assert model.dump() == load(new_svcs, new_slices)[1].dump()
    assert "add table" not in partial_transaction(old, new).text()


def test_a_changed_node_cidr_needs_the_full_transaction(cluster):
    state, _ = cluster
    other = NodeInfo("node-1", (NODE_IP,), "10.245.0.0/16", "10.96.0.0/12")
    tx = partial_transaction(state, desired([WEB, DNS, EMPTY], [WEB_EPS, DNS_EPS], other))
    assert tx.text().startswith("add table ip svcnet\ndelete table ip svcnet\n")


# --- the model refuses what nft refuses ----------------------------------------------------

@pytest.mark.parametrize("statement,reason", [
    ("delete element ip svcnet service-ips { 10.96.0.99 . tcp . 80 }", "No such file or directory"),
    ("add element ip svcnet service-ips { 10.96.0.10 . tcp . 80 : goto ep-tcp-1 }", "File exists"),
    ("add element ip svcnet service-ips { 10.96.0.11 . tcp . 80 : goto ep-tcp-9 }", "No such file or directory"),
    ("add element ip svcnet service-ips { 10.96.0.11 . TCP . 80 : goto ep-tcp-1 }", "Could not parse"),
    ("add element ip svcnet endpoints-tcp { 10.96.0.11 . 80 : 10.244.0.2 . 80 }", "does not match"),
    ("add element ip svcnet nowhere { 1.2.3.4 }", "No such file or directory"),
    ("delete chain ip svcnet ep-tcp-3", "Device or resource busy"),
    ("delete chain ip svcnet reject-chain", "Device or resource busy"),
    ("delete chain ip svcnet ep-tcp-7", "No such file or directory"),
    ("add chain ip svcnet nat-output { type nat hook output priority 0 ; }", "Operation not supported"),
    ("add set ip svcnet cluster-ips { type ipv4_addr . ipv4_addr ; }", "File exists"),
    ("add rule ip svcnet services jump nowhere", "No such file or directory"),
    ("add rule ip svcnet nowhere accept", "No such file or directory"),
    ("add rule ip svcnet services ip daddr . th dport vmap @service-ips", "datatype mismatch"),
    ("add rule ip svcnet services frobnicate", "syntax error"),
    ("delete table ip nosuchtable", "No such file or directory"),
])
def test_model_refuses_what_nft_refuses_and_changes_nothing(cluster, statement, reason):
    _, model = cluster
    before = model.dump()
    text = "add element ip svcnet cluster-ips { 10.96.0.99 }\n" + statement + "\n"
    with pytest.raises(NftError, match=reason):
        model.apply(text)
    assert model.dump() == before


def test_model_accepts_an_identical_element_again(cluster):
    _, model = cluster
    model.apply("add element ip svcnet service-ips { 10.96.0.10 . tcp . 80 : goto ep-tcp-3 }\n")
    assert model.dump() == GOLDEN


def test_model_has_nft_1_0_6s_typeof_th_quirk():
    """Why the endpoint maps are per protocol: with a `th dport` value, a chain for a new
    endpoint count could not be added by a partial sync."""
    tx = Transaction()
    tx.add(Table())
    tx.add(Map("endpoints", typeof="ip daddr . meta l4proto . th dport . numgen random mod 1"
                                   " : ip daddr . th dport"))
    tx.add(Chain("ep-3"))
    tx.add(Rule("ep-3", "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map @endpoints"))
    model = Model()
    model.apply(tx)
    later = Transaction()
    later.add(Chain("ep-2"))
    later.add(Rule("ep-2", "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @endpoints"))
    with pytest.raises(NftError, match="conflicting protocols specified: ip vs. th"):
        model.apply(later)


def test_tcp_dport_implies_a_tcp_match_as_in_nft():
    tx = Transaction()
    tx.add(Table())
    tx.add(Chain("in", "filter", "input", 0))
    tx.add(Rule("in", "tcp dport 22 drop"))
    model = Model()
    model.apply(tx)
    assert str(trace(model, LAPTOP, NODE_IP, "tcp", 22, local_ips=[NODE_IP])) == "drop"
    assert str(trace(model, LAPTOP, NODE_IP, "udp", 22, local_ips=[NODE_IP])) == "accept local"


def test_transaction_text_batches_elements_per_container():
    tx = Transaction()
    tx.add(Elements("cluster-ips", {"10.96.0.1": None, "10.96.0.2": None}))
    tx.delete(Elements("service-ips", {"10.96.0.1 . tcp . 443": "goto ep-tcp-1"}))
    tx.add(Elements("hairpin", {}))
    assert tx.text() == ("add element ip svcnet cluster-ips {\n\t10.96.0.1,\n\t10.96.0.2,\n}\n"
                         "delete element ip svcnet service-ips {\n\t10.96.0.1 . tcp . 443,\n}\n")


def test_model_anonymous_verdict_maps_trace_and_hold_their_chains():
    tx = Transaction()
    tx.add(Table())
    tx.add(Chain("in", "filter", "input", 0))
    tx.add(Chain("a"))
    tx.add(Chain("b"))
    tx.add(Rule("a", "accept"))
    tx.add(Rule("b", "drop"))
    tx.add(Rule("in", "tcp dport vmap { 22 : goto a, 23 : goto b }"))
    model = Model()
    model.apply(tx)
    assert str(trace(model, LAPTOP, NODE_IP, "tcp", 23, local_ips=[NODE_IP])) == "drop"
    assert str(trace(model, LAPTOP, NODE_IP, "tcp", 22, local_ips=[NODE_IP])) == "accept local"
    with pytest.raises(NftError, match="Device or resource busy"):
        model.apply("delete chain ip svcnet b\n")
