"""The seed scenario end to end (issue 4): a real single-node cluster inside network namespaces.

    laptop 192.168.1.10 ---- LAN ---- node 192.168.1.2 (svcnet server + agent)
                                        | svcnet0 10.244.0.1/24
                                      pods 10.244.0.x

Everything runs in namespaces this module creates (unique prefix) and removes at the end, on
failure too; the machine's own namespace is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e.cluster import poll, running_cluster, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
SEED = (ROOT / "examples" / "seed.yaml").read_text()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(unique_prefix("e"), tmp_path_factory.mktemp("seed") / "node",
                         "--lb-pool", "192.168.1.240-192.168.1.250") as c:
        c.kubectl("apply", "-f", "-", input=SEED)
        poll(lambda: c.kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=1s",
                               check=False).startswith("pod/"), 120, "the seed pods to be Ready")
        yield c


def test_laptop_reaches_the_pod_through_the_node_port_only(cluster):
    rc, body = cluster.curl("laptop", "http://192.168.1.2:30008")
    assert (rc, body) == (0, "Hello World!\n")
    hello_ip = cluster.pod_ip("hello")
    assert hello_ip.startswith("10.244.")
    rc, _ = cluster.curl("laptop", f"http://{hello_ip}", timeout=2)
    assert rc != 0  # the pod network is not reachable from the LAN
    assert cluster.curl("node", f"http://{hello_ip}") == (0, "Hello World!\n")
    rc, _ = cluster.curl("node", "http://127.0.0.1:30008", timeout=2)
    assert rc != 0  # NodePorts do not answer on localhost (CVE-2020-8558)


def _dial(cluster, frm: str, host: str, port: int, tries: int = 30) -> list[str]:
    ip = cluster.pod_ip(frm)
    rc, body = cluster.curl("node", f"http://{ip}:8080/dial?request=hostname&protocol=http"
                                    f"&host={host}&port={port}&tries={tries}", timeout=30)
    assert rc == 0, body
    return json.loads(body).get("responses", [])


def test_front_end_reaches_back_ends_through_the_cluster_ip_and_env_vars(cluster):
    svc = cluster.json("get", "svc", "backend")
    ip = svc["spec"]["clusterIP"]
    assert set(_dial(cluster, "frontend", ip, 80)) == {"backend-1", "backend-2"}  # spread over both
    status = cluster.json("get", "pod", "frontend")["status"]
    pid = int(status["containerStatuses"][0]["containerID"].split("://")[1])
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"BACKEND_SERVICE_HOST={ip}".encode() in environ
    assert b"BACKEND_SERVICE_PORT=80" in environ


def test_front_end_reaches_back_ends_by_dns_name(cluster):
    assert set(_dial(cluster, "frontend", "backend", 80)) == {"backend-1", "backend-2"}
    fqdn = "backend.default.svc.cluster.local"
    assert set(_dial(cluster, "frontend", fqdn, 80, tries=10)) <= {"backend-1", "backend-2"}


def test_a_load_balancer_address_spreads_requests_from_the_laptop(cluster):
    svc = poll(lambda: (lambda s: s if s["status"].get("loadBalancer", {}).get("ingress") else None)(
        cluster.json("get", "svc", "backend-lb")), 30, "an ingress address")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "192.168.1.240", "ipMode": "VIP"}]
    seen = set()
    for _ in range(40):
        rc, body = cluster.curl("laptop", "http://192.168.1.240/hostname")
        assert rc == 0, body
        seen.add(body)
        if seen == {"backend-1", "backend-2"}:
            break
    assert seen == {"backend-1", "backend-2"}


def test_a_pod_reaches_itself_through_its_own_service(cluster):
    ip = cluster.json("get", "svc", "backend")["spec"]["clusterIP"]
    assert "backend-1" in set(_dial(cluster, "backend-1", ip, 80, tries=40))  # hairpin


def test_traffic_keeps_flowing_while_the_agent_restarts(cluster):
    hello = cluster.json("get", "pod", "hello")
    pid_before = hello["status"]["containerStatuses"][0]["containerID"]
    failures, done = [], threading.Event()

    def load():
        while not done.is_set():
            rc, body = cluster.curl("laptop", "http://192.168.1.2:30008", timeout=2)
            if (rc, body) != (0, "Hello World!\n"):
                failures.append((rc, body))

    t = threading.Thread(target=load)
    t.start()
    try:
        old = cluster.agent_pid()
        os.kill(old, signal.SIGTERM)
        poll(lambda: cluster.agent_pid() not in (0, old), 30, "the agent to be restarted")
        # keep the load running until the new agent has done its full sync of the rules
        poll(lambda: "svcnet_proxy_full_syncs_total 1" in cluster.curl(
            "node", "http://127.0.0.1:10249/metrics")[1], 30, "the new agent's first full sync")
    finally:
        done.set()
        t.join()
    assert failures == []
    hello = cluster.json("get", "pod", "hello")
    assert hello["status"]["containerStatuses"][0]["containerID"] == pid_before  # adopted, not restarted
    assert hello["status"]["containerStatuses"][0]["restartCount"] == 0


def test_an_endpoint_that_goes_away_stops_receiving_traffic(cluster):
    ip = cluster.json("get", "svc", "backend")["spec"]["clusterIP"]
    cluster.kubectl("delete", "pod", "backend-2", "--grace-period=1")
    poll(lambda: set(_dial(cluster, "frontend", ip, 80, tries=10)) == {"backend-1"}, 30,
         "traffic to stop reaching backend-2")
    assert set(_dial(cluster, "frontend", ip, 80, tries=30)) == {"backend-1"}


def test_kubectl_logs_shows_the_container_output(cluster):
    assert "hello: serving on :80" in cluster.kubectl("logs", "hello")
    cluster.curl("node", f"http://{cluster.pod_ip('hello')}/from-the-logs-test")
    poll(lambda: "/from-the-logs-test" in cluster.kubectl("logs", "hello", "--tail=5"), 10,
         "the request to show in the log")
    r = cluster.world.run("node", "kubectl", f"--kubeconfig={cluster.kubeconfig}",
                          f"--cache-dir={cluster.data / 'kubectl-cache'}", "logs", "hello", "--previous")
    assert r.returncode == 1 and 'previous terminated container "hello" in pod "hello" not found' in r.stderr


def test_a_pod_svcnet_cannot_run_says_why_in_its_status_and_an_event(cluster):
    cluster.kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: Pod\nmetadata: {name: nope}\n"
                    "spec:\n  containers: [{name: c, image: example.com/not-built-in:1}]\n")
    waiting = poll(lambda: (cluster.json("get", "pod", "nope")["status"].get("containerStatuses")
                            or [{}])[0].get("state", {}).get("waiting"), 30, "a waiting reason")
    assert waiting["reason"] not in ("", "ContainerCreating") and "not-built-in" in waiting["message"]
    events = poll(lambda: [e for e in cluster.json("get", "events")["items"]
                           if e["involvedObject"]["name"] == "nope" and e["type"] == "Warning"],
                  30, "a Warning event")
    assert events[0]["reason"] == "Failed" and "not-built-in" in events[0]["message"]
    assert "not-built-in" in cluster.kubectl("describe", "pod", "nope")
    cluster.kubectl("delete", "pod", "nope", "--wait=false")


def test_svcnet_down_leaves_nothing_behind(cluster):
    """Runs last: stops the server, then `svcnet down` inside the node."""
    pids = [int(s["containerID"].split("://")[1])
            for p in cluster.json("get", "pods")["items"]
            for s in (p["status"].get("containerStatuses") or []) if s.get("containerID")]
    assert pids and all(Path(f"/proc/{pid}").exists() for pid in pids)
    for proc in cluster.world.procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    # stopping the server leaves pods and rules in place ...
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    assert "svcnet" in cluster.world.run("node", "nft", "list", "tables").stdout
    # ... and `svcnet down` removes them
    r = cluster.world.run("node", sys.executable, "-m", "svcnet.cli.main", "down", "--data-dir",
                          str(cluster.data))
    assert r.returncode == 0, r.stderr
    poll(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30, "the pods' processes to end")
    assert cluster.world.run("node", "nft", "list", "tables").stdout.strip() == ""
    links = cluster.world.run("node", "ip", "-o", "link").stdout
    assert [l.split(": ")[1].split("@")[0] for l in links.splitlines()] == ["lo", "eth0"]
    assert "10.96.0.0/12" not in cluster.world.run("node", "ip", "route").stdout
