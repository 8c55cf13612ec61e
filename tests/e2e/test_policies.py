"""Traffic policies end to end (issue 5), from the laptop across the LAN:

- externalTrafficPolicy Local: agnhost /clientip shows the laptop's own address (no
  masquerade) through the NodePort and the LoadBalancer address; the healthCheckNodePort
  answers 200 with the local endpoint count, 503 for a Service without local endpoints.
- sessionAffinity ClientIP: the laptop stays on one pod.
- loadBalancerSourceRanges: the laptop is dropped, then allowed after a `kubectl patch`.
- externalIPs: balanced over the pods, and not announced (the laptop routes to the node).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.cluster import poll
from tests.e2e.lb_support import apply_service, hostnames, ingress, lb_link_addresses, pool_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

LAPTOP = "192.168.1.10"
NODE = "192.168.1.2"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with pool_cluster("po", tmp_path_factory.mktemp("po") / "node", "pol", 2) as c:
        yield c


def _answers(cluster, url: str) -> str:
    return poll(lambda: (lambda rc_body: rc_body[1] if rc_body[0] == 0 and rc_body[1] else None)(
        cluster.curl("laptop", url, timeout=2)), 30, f"{url} to answer")


def test_external_traffic_policy_local_keeps_the_client_address(cluster):
    apply_service(cluster, "local", selector="pol", externalTrafficPolicy="Local")
    lb_ip = poll(lambda: ingress(cluster, "local"), 30, "an ingress address")[0]
    spec = cluster.json("get", "svc", "local")["spec"]
    node_port, hc_port = spec["ports"][0]["nodePort"], spec["healthCheckNodePort"]
    for url in (f"http://{lb_ip}/clientip", f"http://{NODE}:{node_port}/clientip"):
        client = _answers(cluster, url)
        assert client.rsplit(":", 1)[0] == LAPTOP, (url, client)
    # Cluster policy, for contrast: masqueraded to the node's address on the pod network
    apply_service(cluster, "cluster", selector="pol", port=81)
    cluster_ip = poll(lambda: ingress(cluster, "cluster"), 30, "an ingress address")[0]
    masq = _answers(cluster, f"http://{cluster_ip}:81/clientip")
    assert masq.rsplit(":", 1)[0] != LAPTOP

    # the health check: 200 with the local endpoint count
    r = cluster.world.run("laptop", "curl", "-s", "-w", "\n%{http_code}", "--max-time", "3",
                          f"http://{NODE}:{hc_port}/healthz")
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "200", r.stdout
    assert json.loads(body) == {"service": {"namespace": "default", "name": "local"},
                                "localEndpoints": 2, "serviceProxyHealthy": True}
    # ... and 503 for a Service with no endpoints here
    apply_service(cluster, "nolocal", selector="nothing", port=82, externalTrafficPolicy="Local")
    hc2 = poll(lambda: cluster.json("get", "svc", "nolocal")["spec"].get("healthCheckNodePort"),
               30, "a healthCheckNodePort")

    def health() -> tuple[str, dict] | None:
        r = cluster.world.run("laptop", "curl", "-s", "-w", "\n%{http_code}", "--max-time", "2",
                              f"http://{NODE}:{hc2}/healthz")
        if r.returncode != 0:
            return None
        body, code = r.stdout.rsplit("\n", 1)
        return code, json.loads(body)

    code, body = poll(health, 30, "the second health check to listen")
    assert code == "503" and body["localEndpoints"] == 0
    cluster.kubectl("delete", "svc", "local", "cluster", "nolocal")


def test_session_affinity_client_ip_keeps_the_laptop_on_one_pod(cluster):
    apply_service(cluster, "sticky", selector="pol", sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    ip = poll(lambda: ingress(cluster, "sticky"), 30, "an ingress address")[0]
    _answers(cluster, f"http://{ip}/hostname")
    seen = hostnames(cluster, f"http://{ip}/hostname", 20)
    assert len(set(seen)) == 1 and seen[0].startswith("pol-"), seen
    cluster.kubectl("delete", "svc", "sticky")


def test_load_balancer_source_ranges_block_then_allow_the_laptop(cluster):
    apply_service(cluster, "fw", selector="pol", loadBalancerSourceRanges=["10.0.0.0/8"])
    ip = poll(lambda: ingress(cluster, "fw"), 30, "an ingress address")[0]
    poll(lambda: ip in lb_link_addresses(cluster), 30, "the address to be announced")
    assert hostnames(cluster, f"http://{ip}/hostname", 3) == ["", "", ""]
    cluster.kubectl("patch", "svc", "fw", "-p",
                    '{"spec": {"loadBalancerSourceRanges": ["192.168.1.0/24"]}}')
    assert _answers(cluster, f"http://{ip}/hostname").startswith("pol-")
    cluster.kubectl("delete", "svc", "fw")


def test_external_ips_are_balanced_but_not_announced(cluster):
    xip = "192.168.1.100"
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
            "spec": {"selector": {"app": "pol"}, "externalIPs": [xip],
                     "ports": [{"port": 80, "targetPort": 8080}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    poll(lambda: cluster.json("get", "endpointslices", "-l",
                              "kubernetes.io/service-name=ext")["items"], 30, "the slice")
    assert xip not in lb_link_addresses(cluster)
    assert hostnames(cluster, f"http://{xip}/hostname", 1) == [""]  # nobody answers ARP for it
    # routing it to the node is the network's business: here, the laptop's own route
    cluster.world.run("laptop", "ip", "route", "add", f"{xip}/32", "via", NODE, check=True)
    _answers(cluster, f"http://{xip}/hostname")
    seen = hostnames(cluster, f"http://{xip}/hostname", 30)
    assert set(seen) == {"pol-1", "pol-2"}, seen
    cluster.kubectl("delete", "svc", "ext")
