"""Service proxy renderer: endpoint order and independence from input order.

The renderer files endpoints by address and sorts them once per service port (ruleset._endpoints,
_sorted), with a shortcut for the common single target port. These tests pin what the golden
dumps do not spell out: numeric (address, port) order across slices and target ports, the tie
between two spellings of one address, and that permuting slices and endpoints changes nothing.
"""

from __future__ import annotations

import random

from svcnet.agent.proxy.ruleset import NodeInfo, ServicePortKey, desired, full_transaction

NODE = NodeInfo("n1", ("192.168.1.2",), "10.244.0.0/16", "10.96.0.0/12")


def service(name, ip, *ports, **spec):
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ports": list(ports), **spec}}


def endpoint_slice(svc, name, ports, endpoints):
    return {"metadata": {"namespace": "default", "name": name, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            "endpoints": endpoints}


def ready(ip, node="n1"):
    return {"addresses": [ip], "conditions": {"ready": True}, "nodeName": node}


WEB = service("web", "10.96.0.10", {"name": "http", "port": 80, "protocol": "TCP"})


def targets(services, slices, ip="10.96.0.10"):
    return desired(services, slices, NODE).endpoints(ServicePortKey(ip, "tcp", 80))


def test_one_target_port_sorts_by_address_as_a_number():
    slices = [endpoint_slice("web", "a", [("http", 8080)],
                             [ready("10.244.0.10"), ready("10.244.0.9"), ready("10.244.1.1"), ready("10.244.0.100")])]
    assert targets([WEB], slices) == (("10.244.0.9", 8080), ("10.244.0.10", 8080), ("10.244.0.100", 8080),
                                      ("10.244.1.1", 8080))


def test_several_target_ports_sort_by_address_then_port():
    slices = [endpoint_slice("web", "a", [("http", 9090)], [ready("10.244.0.10"), ready("10.244.0.2")]),
              endpoint_slice("web", "b", [("http", 8080)], [ready("10.244.0.10"), ready("10.244.0.3")])]
    assert targets([WEB], slices) == (("10.244.0.2", 9090), ("10.244.0.3", 8080), ("10.244.0.10", 8080),
                                      ("10.244.0.10", 9090))


def test_two_spellings_of_one_address_are_ordered_by_their_text():
    # API validation parses addresses sloppily (leading zeros), and inet_aton reads them as
    # octal: "010.244.0.2" is 8.244.0.2. Both stay, in a fixed order whatever the input order.
    for order in (["8.244.0.2", "010.244.0.2"], ["010.244.0.2", "8.244.0.2"]):
        slices = [endpoint_slice("web", "a", [("http", 8080)], [ready(ip) for ip in order])]
        assert targets([WEB], slices) == (("010.244.0.2", 8080), ("8.244.0.2", 8080))


def test_mixed_local_and_remote_endpoints_keep_their_order_in_each_map():
    local_web = dict(WEB, spec=dict(WEB["spec"], internalTrafficPolicy="Local"))
    slices = [endpoint_slice("web", "a", [("http", 8080)],
                             [ready("10.244.1.5", "n2"), ready("10.244.0.7"), ready("10.244.1.2", "n2"),
                              ready("10.244.0.3")])]
    assert targets([local_web], slices) == (("10.244.0.3", 8080), ("10.244.0.7", 8080))
    state = desired([WEB], slices, NODE)
    assert list(state.elements["hairpin"]) == ["10.244.0.3 . 10.244.0.3", "10.244.0.7 . 10.244.0.7"]


def random_world(rng: random.Random, n: int) -> tuple[list[dict], list[dict]]:
    """Services of every kind the renderer branches on, with up to three slices each; an
    address is always on the same node (a pod has one), so no input order can change it."""
    services, slices = [], []
    for i in range(n):
        name, ip = f"s{i}", f"10.96.{i // 256}.{i % 256}"
        spec = {"type": rng.choice(["ClusterIP", "NodePort", "LoadBalancer"]),
                "externalTrafficPolicy": rng.choice(["Cluster", "Local"]),
                "internalTrafficPolicy": rng.choice(["Cluster", "Local"]),
                "sessionAffinity": rng.choice(["None"] * 4 + ["ClientIP"])}
        ports = [{"name": f"p{k}", "port": 80 + k, "protocol": rng.choice(["TCP", "UDP"]),
                  "nodePort": 30000 + 3 * i + k} for k in range(rng.choice([1, 1, 2]))]
        svc = service(name, ip, *ports, **spec)
        if spec["type"] == "LoadBalancer":
            svc["status"] = {"loadBalancer": {"ingress": [{"ip": f"192.168.2.{i % 250}"}]}}
            spec["loadBalancerSourceRanges"] = ["10.0.0.0/8"]
        services.append(svc)
        for s in range(rng.randrange(4)):
            endpoints = []
            for _ in range(rng.randrange(6)):
                a = rng.randrange(40)
                cond = rng.choice([{"ready": True}, {"ready": True}, {"ready": False},
                                   {"ready": False, "serving": True, "terminating": True}])
                endpoints.append({"addresses": [f"10.244.{a % 3}.{a}"], "conditions": cond,
                                  "nodeName": ("n1", "n2", "n3")[a % 3]})
            slices.append({"metadata": {"namespace": "default", "name": f"{name}-{s}",
                                        "labels": {"kubernetes.io/service-name": name}},
                           "addressType": "IPv4",
                           "ports": [{"name": p["name"], "port": rng.choice([8080, 8081]),
                                      "protocol": p["protocol"]} for p in ports],
                           "endpoints": endpoints})
    return services, slices


def test_the_ruleset_does_not_depend_on_the_order_of_slices_or_endpoints():
    rng = random.Random(4)
    services, slices = random_world(rng, 300)
    want = full_transaction(desired(services, slices, NODE)).text()
    for _ in range(3):
        shuffled = [dict(s, endpoints=rng.sample(s["endpoints"], len(s["endpoints"]))) for s in slices]
        rng.shuffle(shuffled)
        assert full_transaction(desired(services, shuffled, NODE)).text() == want
