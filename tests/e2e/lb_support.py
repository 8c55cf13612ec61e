"""Helpers shared by the LoadBalancer and traffic-policy end-to-end modules: agnhost netexec
pods, Services as JSON, waiting for an ingress address, and asking which pod answered."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from tests.e2e.cluster import Cluster, poll, running_cluster, unique_prefix

NETEXEC = "registry.k8s.io/e2e-test-images/agnhost:2.53"


@contextlib.contextmanager
def pool_cluster(tag: str, data: Path, app: str, pods: int, pool: str = "192.168.1.240-192.168.1.250"):
    """A cluster started with `--lb-pool pool`, with `pods` netexec pods labelled app=<app>."""
    with running_cluster(unique_prefix(tag), data, "--lb-pool", pool) as c:
        netexec_pods(c, app, pods)
        yield c


def netexec_pods(cluster: Cluster, app: str, n: int) -> list[str]:
    """`n` agnhost netexec pods labelled app=<app> (HTTP on 8080), Ready."""
    names = [f"{app}-{i}" for i in range(1, n + 1)]
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
             "spec": {"containers": [{
                 "name": "netexec", "image": NETEXEC,
                 "args": ["netexec", "--http-port=8080", "--udp-port=-1"],
                 "ports": [{"containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/hostname", "port": 8080},
                                    "periodSeconds": 1}}]}}
            for name in names]
    cluster.kubectl("apply", "-f", "-", input="\n".join(json.dumps(d) for d in docs))
    poll(lambda: cluster.kubectl("wait", "--for=condition=Ready", "pod", *names, "--timeout=1s",
                                 check=False).count("condition met") == n, 120, f"{app} pods Ready")
    return names


def apply_service(cluster: Cluster, name: str, selector: str | None = None, port: int = 80,
                  annotations: dict | None = None, **spec) -> None:
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", "selector": {"app": selector or name},
                     "ports": [{"port": port, "targetPort": 8080}], **spec}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def ingress(cluster: Cluster, name: str) -> list[str]:
    lb = cluster.json("get", "svc", name)["status"].get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or ()]


def wait_ingress(cluster: Cluster, name: str, want: list[str]) -> None:
    poll(lambda: ingress(cluster, name) == want, 30, f"{name} to get ingress {want}")


def warnings(cluster: Cluster, name: str) -> list[str]:
    items = cluster.json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [e["message"] for e in items if e["type"] == "Warning"]


def hostnames(cluster: Cluster, url: str, n: int, host: str = "laptop") -> list[str]:
    """The pods that answered `n` requests to url (each its own connection); failures as ""."""
    out = []
    for _ in range(n):
        rc, body = cluster.curl(host, url, timeout=2)
        out.append(body.strip() if rc == 0 else "")
    return out


def lb_link_addresses(cluster: Cluster) -> set[str]:
    r = cluster.world.run("node", "ip", "-j", "-4", "addr", "show", "dev", "svcnet-lb0")
    if r.returncode != 0 or not r.stdout.strip():
        return set()
    return {a["local"] for link in json.loads(r.stdout) for a in link.get("addr_info", ())}
