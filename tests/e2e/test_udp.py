"""UDP Services end to end (issue 5): a client that keeps ONE socket open recovers after its pod is
replaced, after the Service goes to zero endpoints and back, and after the Service is deleted
and recreated (stale conntrack entries cleared: kubernetes/kubernetes#139628).

    laptop 192.168.1.10 --- LAN --- node 192.168.1.2 (svcnet server --lb-pool ..., agent)
      client -> 192.168.1.2:30090/udp     client -> ClusterIP:9053/udp
      client -> 192.168.1.240:9053/udp    | pods: agnhost netexec --udp-port=8081

Each client sends "hostname" every 0.1 s from one connected socket (so one conntrack entry for
its whole life) and logs every answer or error. Everything runs in namespaces this module
creates (unique prefix) and removes, on failure too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from svcnet.agent.proxy.conntrack import parse
from tests.e2e.cluster import poll, running_cluster, unique_prefix

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

NODE_PORT, PORT, LB_IP = 30090, 9053, "192.168.1.240"

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: udp}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.52
    args: ["netexec", "--http-port=8080", "--udp-port=8081"]
    readinessProbe:
      httpGet: {{path: /healthz, port: 8080}}
      periodSeconds: 1
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: udp}}
spec:
  type: LoadBalancer
  loadBalancerIP: 192.168.1.240
  selector: {{app: udp}}
  {cluster_ip}
  ports: [{{name: dns, protocol: UDP, port: {port}, targetPort: 8081, nodePort: {node_port}}}]
"""

CLIENT = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(0.3)
out = open(sys.argv[3], "a", buffering=1)
while True:
    try:
        s.send(b"hostname")
        answer = s.recv(200).decode().strip()
    except OSError as e:
        answer = "!" + type(e).__name__
    out.write(json.dumps([time.time(), answer]) + "\n")
    time.sleep(0.1)
"""


class Client:
    """A UDP client with one socket for its whole life, running in `host`; its log is read here."""

    def __init__(self, cluster, host: str, ip: str, port: int, log):
        self.log = log
        self.proc = cluster.world.spawn(host, sys.executable, "-c", CLIENT, ip, str(port), str(log),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers(self, since: float) -> list[str]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [a for t, a in lines if t >= since]

    def hears(self, pod: str, since: float) -> bool:
        """The last three answers since `since` all came from `pod`."""
        answers = self.answers(since)
        return len(answers) >= 3 and answers[-3:] == [pod] * 3

    def silent(self, since: float) -> bool:
        """At least ten attempts since `since` and none answered (the last ten)."""
        answers = self.answers(since)
        return len(answers) >= 10 and all(a.startswith("!") for a in answers[-10:])


def create_pod(cluster, name: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=POD.format(name=name))
    poll(lambda: cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=1s",
                                 check=False).startswith("pod/"), 60, f"{name} to be Ready")


def endpoint_ips(cluster) -> set[str]:
    slices = cluster.json("get", "endpointslices", "-l", "kubernetes.io/service-name=udp")["items"]
    return {ep["addresses"][0] for s in slices for ep in s.get("endpoints") or ()
            if (ep.get("conditions") or {}).get("ready")}


def stale_entries(cluster, pod_ip: str) -> list:
    """UDP conntrack entries in the node still DNATed to `pod_ip` for the Service's ports."""
    out = cluster.world.run("node", "conntrack", "-L", "-p", "udp").stdout
    return [e for e in parse(out) if e.reply_src == pod_ip and e.dport in (PORT, NODE_PORT)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(unique_prefix("u"), tmp_path_factory.mktemp("udp") / "node",
                         "--lb-pool", "192.168.1.240-192.168.1.250") as c:
        yield c


def ingress(cluster) -> list[str]:
    return [i.get("ip") for i in (cluster.json("get", "svc", "udp")["status"].get("loadBalancer") or {})
            .get("ingress") or ()]


def test_one_socket_keeps_working_through_pod_replacement_zero_endpoints_and_service_recreation(cluster, tmp_path):
    cluster.kubectl("apply", "-f", "-", input=SERVICE.format(cluster_ip="", port=PORT, node_port=NODE_PORT))
    create_pod(cluster, "udp-a")
    cluster_ip = cluster.json("get", "svc", "udp")["spec"]["clusterIP"]
    poll(lambda: ingress(cluster) == [LB_IP], 30, "the LoadBalancer address")
    clients = (Client(cluster, "laptop", "192.168.1.2", NODE_PORT, tmp_path / "nodeport.log"),
               Client(cluster, "laptop", LB_IP, PORT, tmp_path / "lb.log"),
               Client(cluster, "node", cluster_ip, PORT, tmp_path / "clusterip.log"))
    start = time.time()
    for client in clients:
        poll(lambda: client.hears("udp-a", start), 30, "every client to reach udp-a")

    # The pod is replaced: b comes up first (so it cannot inherit a's address), then a goes.
    # Every client's entry points at a; they must be cleared for the clients to move to b.
    create_pod(cluster, "udp-b")
    a_ip = cluster.pod_ip("udp-a")
    cluster.kubectl("delete", "pod", "udp-a", "--wait=false")
    poll(lambda: endpoint_ips(cluster) == {cluster.pod_ip("udp-b")}, 30, "a to leave the endpoints")
    moved = time.time()
    for client in clients:
        poll(lambda: client.hears("udp-b", moved), 30, "every client to move to udp-b")
    assert stale_entries(cluster, a_ip) == []

    # Zero endpoints: the clients' entries to b must go too (kube-proxy 1.32 kept them, and the
    # clients' packets kept going to the dead pod), then a new pod serves the same sockets.
    b_ip = cluster.pod_ip("udp-b")
    cluster.kubectl("delete", "pod", "udp-b", "--wait=false")
    poll(lambda: endpoint_ips(cluster) == set(), 30, "the Service to have no endpoints")
    poll(lambda: stale_entries(cluster, b_ip) == [], 30, "entries to the last, gone pod to be cleared")
    gone = time.time()
    for client in clients:
        poll(lambda: client.silent(gone), 30, "the clients to get no answers")
    create_pod(cluster, "udp-c")
    back = time.time()
    for client in clients:
        poll(lambda: client.hears("udp-c", back), 30, "every client to reach udp-c")

    # The Service is deleted: its traffic stops at once (the entries to c go, although c still
    # runs), and a Service recreated on the same ClusterIP and NodePort serves the sockets again.
    c_ip = cluster.pod_ip("udp-c")
    cluster.kubectl("delete", "svc", "udp")
    deleted = time.time()
    for client in clients:
        poll(lambda: client.silent(deleted), 30, "the deleted Service's traffic to stop")
    assert stale_entries(cluster, c_ip) == []
    cluster.kubectl("apply", "-f", "-", input=SERVICE.format(cluster_ip=f"clusterIP: {cluster_ip}",
                                                            port=PORT, node_port=NODE_PORT))
    poll(lambda: ingress(cluster) == [LB_IP], 30, "the LoadBalancer address again")
    recreated = time.time()
    for client in clients:
        poll(lambda: client.hears("udp-c", recreated), 30, "every client to reach the recreated Service")
