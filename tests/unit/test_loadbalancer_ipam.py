"""The LoadBalancer allocation core (lbipam): pools, MetalLB's sharing rules, ServiceLB mode."""

from __future__ import annotations

import pytest

from svcnet.controllers import lbipam
from svcnet.controllers.lbipam import Pool, claim, decide

POOL = Pool.parse(["192.168.1.240-192.168.1.242"])


def svc(name: str, *ports, created: str = "2026-01-01T00:00:00Z", ips: tuple = (),
        cls: str | None = None, annotations: dict | None = None, etp: str = "Cluster",
        selector: dict | None = None, lb_ip: str | None = None, type_: str = "LoadBalancer") -> dict:
    spec = {"type": type_, "externalTrafficPolicy": etp, "selector": selector or {"app": name},
            "ports": [{"port": p, "protocol": proto} for proto, p in
                      (x if isinstance(x, tuple) else ("TCP", x) for x in (ports or (80,)))]}
    if cls:
        spec["loadBalancerClass"] = cls
    if lb_ip:
        spec["loadBalancerIP"] = lb_ip
    return {"metadata": {"namespace": "default", "name": name, "creationTimestamp": created,
                         "annotations": annotations or {}},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": i} for i in ips]} if ips else {}}}


def claims(*services, pool=POOL):
    return [claim(s, pool) for s in services]


def shared(key: str) -> dict:
    return {lbipam.ANNOTATION_SHARED: key}


# ---- pools ------------------------------------------------------------------------------------

def test_pool_parses_ranges_cidrs_and_single_addresses():
    p = Pool.parse(["192.168.1.240-192.168.1.250", "10.0.0.0/30", "172.16.0.9"])
    assert p.size() == 11 + 4 + 1
    assert list(p.addresses())[:2] == ["192.168.1.240", "192.168.1.241"]
    assert "10.0.0.3" in p and "10.0.0.4" not in p and "172.16.0.9" in p
    assert "not-an-ip" not in p
    assert str(p) == "192.168.1.240-192.168.1.250,10.0.0.0-10.0.0.3,172.16.0.9"


@pytest.mark.parametrize("spec, message", [
    ("1.2.3", "want an IPv4 range A-B or a CIDR"),
    ("192.168.1.250-192.168.1.240", "is before"),
    ("fd00::/120", "want an IPv4 range"),
])
def test_pool_refuses_bad_ranges(spec, message):
    with pytest.raises(ValueError, match=message):
        Pool.parse([spec])


def test_pool_refuses_overlapping_ranges():
    with pytest.raises(ValueError, match="overlap"):
        Pool.parse(["192.168.1.0/28", "192.168.1.10-192.168.1.20"])


# ---- modes ------------------------------------------------------------------------------------

def test_modes_by_class_and_pool():
    assert lbipam.mode(svc("a"), POOL) == lbipam.POOL
    assert lbipam.mode(svc("a", cls=lbipam.LB_CLASS), POOL) == lbipam.POOL
    assert lbipam.mode(svc("a", cls=lbipam.NODE_LB_CLASS), POOL) == lbipam.NODE
    assert lbipam.mode(svc("a"), Pool()) == lbipam.NODE
    assert lbipam.mode(svc("a", cls="example.com/other"), POOL) == lbipam.FOREIGN
    assert lbipam.mode(svc("a", type_="NodePort"), POOL) is None


# ---- pool mode --------------------------------------------------------------------------------

def test_first_free_address_then_the_next():
    a = svc("a")
    assert decide(a, [], POOL, []).ips == ("192.168.1.240",)
    b = svc("b")
    assert decide(b, claims(svc("a", ips=("192.168.1.240",))), POOL, []).ips == ("192.168.1.241",)


def test_a_held_address_is_kept_across_decisions():
    a = svc("a", ips=("192.168.1.242",))
    assert decide(a, [], POOL, []).ips == ("192.168.1.242",)


def test_exhausted_pool_is_pending_with_the_reason():
    holders = claims(*(svc(n, ips=(ip,)) for n, ip in
                       zip("xyz", ("192.168.1.240", "192.168.1.241", "192.168.1.242"))))
    d = decide(svc("d"), holders, POOL, [])
    assert d.ips == ()
    assert "no available IPs" in d.message and "3 addresses, all in use" in d.message


def test_foreign_holders_are_never_given_away():
    other = svc("o", cls="example.com/other", ips=("192.168.1.240",))
    assert decide(svc("a"), claims(other), POOL, []).ips == ("192.168.1.241",)


def test_requested_address_honoured_when_free_and_in_the_pool():
    assert decide(svc("a", lb_ip="192.168.1.241"), [], POOL, []).ips == ("192.168.1.241",)
    ann = {lbipam.ANNOTATION_IPS: "192.168.1.242"}
    assert decide(svc("a", annotations=ann), [], POOL, []).ips == ("192.168.1.242",)


def test_requested_address_moves_a_held_one():
    a = svc("a", ips=("192.168.1.240",), lb_ip="192.168.1.242")
    assert decide(a, [], POOL, []).ips == ("192.168.1.242",)


@pytest.mark.parametrize("kwargs, message", [
    ({"lb_ip": "192.168.1.5"}, "is not in any --lb-pool range (192.168.1.240-192.168.1.242)"),
    ({"lb_ip": "192.168.1.240"}, "is in use by default/x, which does not allow sharing"),
    ({"lb_ip": "nope"}, "'nope' is not a valid IP address"),
    ({"annotations": {lbipam.ANNOTATION_IPS: "fd00::1"}}, "is not IPv4"),
    ({"annotations": {lbipam.ANNOTATION_IPS: "192.168.1.240,192.168.1.241"}},
     "more than one IPv4 address"),
    ({"annotations": {lbipam.ANNOTATION_IPS: "192.168.1.241"}, "lb_ip": "192.168.1.241"},
     "can not have both"),
])
def test_requested_address_refused_stays_pending(kwargs, message):
    holder = svc("x", ips=("192.168.1.240",))
    d = decide(svc("a", **kwargs), claims(holder), POOL, [])
    assert d.ips == ()
    assert message in d.message


def test_sharing_needs_the_same_key_on_both_and_disjoint_ports():
    first = svc("a", 80, ips=("192.168.1.240",), annotations=shared("k"))
    # same key, other port: shares (and prefers the shared address over a free one)
    assert decide(svc("b", 443, annotations=shared("k")), claims(first), POOL, []).ips == \
        ("192.168.1.240",)
    # same key, same port but another protocol: still disjoint
    assert decide(svc("b", ("UDP", 80), annotations=shared("k")), claims(first), POOL, []).ips == \
        ("192.168.1.240",)
    # same key, clashing port: another address
    assert decide(svc("b", 80, annotations=shared("k")), claims(first), POOL, []).ips == \
        ("192.168.1.241",)
    # other key or no key: another address
    assert decide(svc("b", 443, annotations=shared("j")), claims(first), POOL, []).ips == \
        ("192.168.1.241",)
    assert decide(svc("b", 443), claims(first), POOL, []).ips == ("192.168.1.241",)


def test_sharing_refusals_name_the_reason_for_a_requested_address():
    first = svc("a", 80, ips=("192.168.1.240",), annotations=shared("k"))
    cases = [
        (svc("b", 80, lb_ip="192.168.1.240", annotations=shared("k")),
         "port TCP/80 is already in use on 192.168.1.240 by default/a"),
        (svc("b", 443, lb_ip="192.168.1.240", annotations=shared("j")),
         "with sharing key 'k', not 'j'"),
        (svc("b", 443, lb_ip="192.168.1.240"), "this Service does not allow sharing"),
    ]
    for s, message in cases:
        d = decide(s, claims(first), POOL, [])
        assert d.ips == () and message in d.message, d


def test_local_policy_shares_only_between_services_selecting_the_same_pods():
    first = svc("a", 80, ips=("192.168.1.240",), annotations=shared("k"), etp="Local",
                selector={"app": "web"})
    same = svc("b", 443, annotations=shared("k"), etp="Local", selector={"app": "web"})
    other = svc("c", 443, annotations=shared("k"), etp="Local", selector={"app": "db"})
    assert decide(same, claims(first), POOL, []).ips == ("192.168.1.240",)
    assert decide(other, claims(first), POOL, []).ips == ("192.168.1.241",)


def test_the_older_service_keeps_a_contested_address_and_the_younger_is_redecided():
    old = svc("old", created="2026-01-01T00:00:00Z", ips=("192.168.1.240",))
    young = svc("young", created="2026-01-02T00:00:00Z", ips=("192.168.1.240",))
    d_old = decide(old, claims(young), POOL, [])
    assert d_old.ips == ("192.168.1.240",) and d_old.conflicts == ("default/young",)
    assert decide(young, claims(old), POOL, []).ips == ("192.168.1.241",)


def test_a_service_that_stops_sharing_loses_the_address_to_the_older_one():
    old = svc("old", 80, created="2026-01-01T00:00:00Z", ips=("192.168.1.240",),
              annotations=shared("k"))
    young = svc("young", 443, created="2026-01-02T00:00:00Z", ips=("192.168.1.240",))
    assert decide(young, claims(old), POOL, []).ips == ("192.168.1.241",)
    assert decide(old, claims(young), POOL, []).conflicts == ("default/young",)


def test_a_held_address_outside_the_pool_is_replaced():
    a = svc("a", ips=("10.1.1.1",))
    assert decide(a, [], POOL, []).ips == ("192.168.1.240",)


# ---- ServiceLB mode ---------------------------------------------------------------------------

NODES = ["192.168.1.3", "192.168.1.2"]


def test_servicelb_mode_gives_the_nodes_addresses_sorted():
    assert decide(svc("a"), [], Pool(), NODES).ips == ("192.168.1.2", "192.168.1.3")


def test_servicelb_mode_exposes_each_port_once():
    a = svc("a", 80, 443, ips=("192.168.1.2",))
    d = decide(svc("b", 8080, 443), claims(a, pool=Pool()), Pool(), NODES)
    assert d.ips == ()
    assert "port TCP/443 is already in use on the nodes by LoadBalancer Service default/a" in d.message
    assert decide(svc("b", ("UDP", 443)), claims(a, pool=Pool()), Pool(), NODES).ips == \
        ("192.168.1.2", "192.168.1.3")
    # a pending one holds nothing
    pending = svc("p", 8080)
    assert decide(svc("b", 8080), claims(pending, pool=Pool()), Pool(), NODES).ips != ()


def test_servicelb_class_with_a_pool_and_pool_holders_do_not_clash_with_it():
    pool_svc = svc("p", 80, ips=("192.168.1.240",))
    node_svc = svc("n", 80, cls=lbipam.NODE_LB_CLASS)
    assert decide(node_svc, claims(pool_svc), POOL, NODES).ips == ("192.168.1.2", "192.168.1.3")


def test_servicelb_mode_without_ready_nodes_or_with_a_requested_address_is_pending():
    assert "no Ready node" in decide(svc("a"), [], Pool(), []).message
    d = decide(svc("a", lb_ip="192.168.1.2"), [], Pool(), NODES)
    assert d.ips == () and "ServiceLB mode" in d.message


def test_node_addresses_are_the_ready_nodes_internal_ips():
    def node(ready: str, *addrs):
        return {"status": {"conditions": [{"type": "Ready", "status": ready}],
                           "addresses": [{"type": t, "address": a} for t, a in addrs]}}
    nodes = [node("True", ("InternalIP", "192.168.1.3"), ("Hostname", "n2")),
             node("True", ("InternalIP", "192.168.1.2"), ("InternalIP", "fd00::2")),
             node("False", ("InternalIP", "192.168.1.4"))]
    assert lbipam.node_addresses(nodes) == ["192.168.1.2", "192.168.1.3"]


def test_servicelb_mode_keeps_off_the_api_servers_port():
    api = {"endpoints": [{"addresses": ["192.168.1.2"]}], "ports": [{"port": 6443, "protocol": "TCP"}]}
    reserved = lbipam.api_server_ports(api, NODES)
    assert reserved == {("TCP", 6443): "the API server (default/kubernetes)"}
    d = decide(svc("a", 6443), [], Pool(), NODES, reserved)
    assert d.ips == () and "port TCP/6443 is used on the nodes by the API server" in d.message
    assert decide(svc("a", 6444), [], Pool(), NODES, reserved).ips != ()
    assert decide(svc("a", 6443), [], POOL, NODES, reserved).ips == ("192.168.1.240",)  # pools: fine
    assert lbipam.api_server_ports(api, ["10.0.0.1"]) == {}  # an API server elsewhere
    assert lbipam.api_server_ports(None, NODES) == {}


def test_the_command_line_refuses_overlapping_pools_before_anything_starts(capsys):
    """(`svcnet server` checks its --lb-pool the same way; a controller manager with no
    kubeconfig is the command that starts nothing if the check were gone.)"""
    from svcnet.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["controller-manager", "--kubeconfig", "/nonexistent",
              "--lb-pool", "192.168.1.240/30", "--lb-pool", "192.168.1.242"])
    assert e.value.code == 2
    assert "--lb-pool ranges overlap: 192.168.1.240-192.168.1.243 and 192.168.1.242" in \
        capsys.readouterr().err
