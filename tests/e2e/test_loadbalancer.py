"""LoadBalancer Services end to end (issue 5): a server started with `--lb-pool`, agnhost pods,
the laptop reaching the pool address across the LAN (ARP answered by the node), release and
re-acquisition, an exhausted pool, and ServiceLB mode (class svcnet.io/node-lb: the node's own
address), and the default without a pool (ServiceLB mode for all). Namespaces are built and removed by the shared harness (unique prefix)."""

from __future__ import annotations

import os

import pytest

from tests.e2e.cluster import poll, running_cluster, unique_prefix
from tests.e2e.lb_support import (apply_service, hostnames, ingress, lb_link_addresses,
                                  netexec_pods, pool_cluster, wait_ingress, warnings)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

POOL = "192.168.1.240-192.168.1.250"
FIRST = "192.168.1.240"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with pool_cluster("lb", tmp_path_factory.mktemp("lb") / "node", "web", 3, POOL) as c:
        yield c


def test_the_laptop_reaches_the_pool_address_and_requests_spread_over_all_pods(cluster):
    apply_service(cluster, "web")
    wait_ingress(cluster, "web", [FIRST])
    assert FIRST in cluster.kubectl("get", "svc", "web")  # EXTERNAL-IP column
    poll(lambda: hostnames(cluster, f"http://{FIRST}/hostname", 1)[0].startswith("web-"), 30,
         "the LoadBalancer address to answer")
    seen = hostnames(cluster, f"http://{FIRST}/hostname", 40)
    assert set(seen) == {"web-1", "web-2", "web-3"}, seen
    mac = cluster.world.run("node", "cat", "/sys/class/net/eth0/address").stdout.strip()
    assert mac in cluster.world.run("laptop", "ip", "neigh", "show", FIRST).stdout
    assert lb_link_addresses(cluster) == {FIRST}


def test_the_pool_address_exposes_only_the_service_port(cluster):
    """The node holds the pool address locally (svcnet-lb0), yet the laptop reaches neither
    the API server nor a NodePort through it: refused at once (curl exit 7), not a timeout.
    The node's own address keeps both."""
    apply_service(cluster, "web")
    wait_ingress(cluster, "web", [FIRST])
    poll(lambda: hostnames(cluster, f"http://{FIRST}/hostname", 1)[0].startswith("web-"), 30,
         "the LoadBalancer address to answer")
    node_port = cluster.json("get", "svc", "web")["spec"]["ports"][0]["nodePort"]

    def laptop(url):
        r = cluster.world.run("laptop", "curl", "-sk", "--max-time", "5", url)
        return r.returncode, r.stdout.strip()

    assert laptop(f"https://{FIRST}:6443/readyz") == (7, "")
    assert laptop(f"http://{FIRST}:{node_port}/hostname") == (7, "")
    assert laptop("https://192.168.1.2:6443/readyz") == (0, "ok")
    assert laptop(f"http://192.168.1.2:{node_port}/hostname")[1].startswith("web-")
    assert all(h.startswith("web-") for h in hostnames(cluster, f"http://{FIRST}/hostname", 3))


def test_release_on_delete_and_type_change_then_reacquire(cluster):
    apply_service(cluster, "web")
    wait_ingress(cluster, "web", [FIRST])
    cluster.kubectl("delete", "svc", "web")
    apply_service(cluster, "web2", selector="web")
    wait_ingress(cluster, "web2", [FIRST])  # the released address is handed out again

    cluster.kubectl("patch", "svc", "web2", "-p", '{"spec": {"type": "ClusterIP"}}')
    poll(lambda: ingress(cluster, "web2") == [], 30, "the address to be released")
    poll(lambda: lb_link_addresses(cluster) == set(), 30, "the node to stop announcing it")
    cluster.world.run("laptop", "ip", "neigh", "flush", "all")
    assert hostnames(cluster, f"http://{FIRST}/hostname", 1) == [""]

    cluster.kubectl("patch", "svc", "web2", "-p", '{"spec": {"type": "LoadBalancer"}}')
    wait_ingress(cluster, "web2", [FIRST])
    poll(lambda: hostnames(cluster, f"http://{FIRST}/hostname", 1)[0].startswith("web-"), 30,
         "the address to answer again")
    cluster.kubectl("delete", "svc", "web2")


def test_an_exhausted_pool_leaves_the_service_pending_with_an_event(cluster):
    names = [f"fill-{i}" for i in range(11)]  # the pool has 11 addresses
    for name in names:
        apply_service(cluster, name, selector="web")
    poll(lambda: all(ingress(cluster, n) for n in names), 60, "the pool to fill up")
    assert len({ingress(cluster, n)[0] for n in names}) == 11  # never one address twice
    apply_service(cluster, "one-too-many", selector="web")
    poll(lambda: any("no available IPs" in m for m in warnings(cluster, "one-too-many")), 30,
         "an AllocationFailed event")
    assert ingress(cluster, "one-too-many") == []
    assert "<pending>" in cluster.kubectl("get", "svc", "one-too-many")
    freed = ingress(cluster, names[3])
    cluster.kubectl("delete", "svc", names[3])
    wait_ingress(cluster, "one-too-many", freed)
    cluster.kubectl("delete", "svc", "one-too-many", *[n for n in names if n != names[3]])
    poll(lambda: lb_link_addresses(cluster) == set(), 30, "every address to be withdrawn")


def test_servicelb_mode_exposes_the_service_on_the_nodes_own_address(cluster):
    apply_service(cluster, "node-lb", selector="web", port=8081,
                  loadBalancerClass="svcnet.io/node-lb")
    wait_ingress(cluster, "node-lb", ["192.168.1.2"])
    poll(lambda: hostnames(cluster, "http://192.168.1.2:8081/hostname", 1)[0].startswith("web-"),
         30, "the node address to answer on the Service port")
    apply_service(cluster, "node-lb-2", selector="web", port=8081,
                  loadBalancerClass="svcnet.io/node-lb")
    poll(lambda: any("port TCP/8081 is already in use on the nodes" in m
                     for m in warnings(cluster, "node-lb-2")), 30, "a port clash event")
    assert ingress(cluster, "node-lb-2") == []
    assert lb_link_addresses(cluster) == set()  # the node's own address is not announced again
    cluster.kubectl("delete", "svc", "node-lb")
    wait_ingress(cluster, "node-lb-2", ["192.168.1.2"])
    cluster.kubectl("delete", "svc", "node-lb-2")


def test_without_a_pool_a_load_balancer_gets_the_nodes_address(tmp_path):
    """The default (no --lb-pool): ServiceLB mode for every LoadBalancer, in its own cluster."""
    with running_cluster(unique_prefix("ls"), tmp_path / "node") as c:
        netexec_pods(c, "solo", 1)
        apply_service(c, "solo", port=8082)
        wait_ingress(c, "solo", ["192.168.1.2"])
        poll(lambda: hostnames(c, "http://192.168.1.2:8082/hostname", 1) == ["solo-1"], 30,
             "the node address to answer on the Service port")
        assert lb_link_addresses(c) == set()
        apply_service(c, "hijack", selector="solo", port=6443)  # the API server's port
        poll(lambda: any("port TCP/6443 is used on the nodes by the API server" in m
                         for m in warnings(c, "hijack")), 30, "the API port to be refused")
        assert ingress(c, "hijack") == []
        assert c.kubectl("get", "--raw=/readyz", check=False) == "ok"
