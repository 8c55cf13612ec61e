"""Deployments end to end (issue 6): a real single-node cluster in network namespaces, agnhost
netexec pods behind a NodePort, driven with kubectl.

    laptop 192.168.1.10 ---- LAN ---- node 192.168.1.2 (svcnet server + agent)
      load generator: a new connection per request to 192.168.1.2:NODE_PORT

Scaling, self-healing, and rolling updates (`set env`, `set image`, `rollout undo`) while the
load generator counts failures: there must be none; a rollout whose new pods never become
ready stops at maxUnavailable, reports ProgressDeadlineExceeded and the old pods keep serving
until `rollout undo`. The pods use a readiness probe on /readyz
and `--delay-shutdown`, as Kubernetes' own e2e tests do: a terminating pod turns unready at once
and keeps serving its connections until the data plane has stopped sending it new ones.
Everything runs in namespaces this module creates (unique prefix) and removes, on failure too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import pytest

from tests.e2e.cluster import poll, running_cluster, unique_prefix

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

NODE_PORT = 30086
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
IMAGE2 = "registry.k8s.io/e2e-test-images/agnhost:2.52"

MANIFEST = f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: netexec
        image: {IMAGE}
        args: ["netexec", "--http-port=8080", "--delay-shutdown=3"]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /readyz, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, nodePort: {NODE_PORT}}}]
"""

# The load generator: one new TCP connection per request until the stop file appears; prints
# {"ok": n, "failed": n, "errors": [...], "hosts": {...}} when it ends.
LOADGEN = r"""
import http.client, json, os, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok, failed, errors, hosts = 0, 0, [], {}
while not os.path.exists(stop):
    try:
        c = http.client.HTTPConnection(host, port, timeout=3)
        c.request("GET", "/hostname", headers={"Connection": "close"})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}")
        ok += 1
        hosts[body] = hosts.get(body, 0) + 1
    except Exception as e:
        failed += 1
        errors.append(f"{time.time():.3f} {e!r}")
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:20], "hosts": hosts}))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(unique_prefix("w"), tmp_path_factory.mktemp("rollout") / "node") as c:
        c.kubectl("apply", "-f", "-", input=MANIFEST)
        rollout(c)
        yield c


def rollout(c, timeout: int = 90) -> str:
    return c.kubectl("rollout", "status", "deploy/web", f"--timeout={timeout}s")


def running_pods(c) -> list[dict]:
    return [p for p in c.json("get", "pods", "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def ready_endpoints(c) -> set[str]:
    slices = c.json("get", "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
    return {a for s in slices for e in s.get("endpoints") or ()
            if e.get("conditions", {}).get("ready") for a in e["addresses"]}


def hostnames_from_laptop(c, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        rc, body = c.curl("laptop", f"http://192.168.1.2:{NODE_PORT}/hostname")
        assert rc == 0, body
        seen.add(body)
    return seen


def test_deployment_serves_through_the_node_port(cluster):
    pods = running_pods(cluster)
    assert len(pods) == 3
    names = {p["metadata"]["name"] for p in pods}
    assert hostnames_from_laptop(cluster, 30) <= names
    assert ready_endpoints(cluster) == {p["status"]["podIP"] for p in pods}
    wide = cluster.kubectl("get", "deploy,rs,pods", "-o", "wide")
    assert "deployment.apps/web   3/3" in wide and "192.168.1.2" not in wide.split("pod/")[0]


def test_scale_up_and_down(cluster):
    cluster.kubectl("scale", "deploy/web", "--replicas=5")
    rollout(cluster)
    poll(lambda: len(ready_endpoints(cluster)) == 5, 30, "5 ready endpoints")
    assert len(hostnames_from_laptop(cluster, 40)) >= 3
    cluster.kubectl("scale", "deploy/web", "--replicas=2")
    poll(lambda: len(running_pods(cluster)) == 2 and len(ready_endpoints(cluster)) == 2, 60,
         "2 pods and 2 endpoints")
    assert hostnames_from_laptop(cluster, 10) <= {p["metadata"]["name"] for p in running_pods(cluster)}
    cluster.kubectl("scale", "deploy/web", "--replicas=3")
    rollout(cluster)


def test_a_deleted_pod_is_replaced(cluster):
    victim = running_pods(cluster)[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim, "--wait=false")
    poll(lambda: len(running_pods(cluster)) == 3
         and victim not in {p["metadata"]["name"] for p in running_pods(cluster)}, 60, "a replacement pod")
    rollout(cluster)
    poll(lambda: len(ready_endpoints(cluster)) == 3, 60, "3 ready endpoints")


@contextlib.contextmanager
def load(cluster):
    """The load generator in the laptop namespace while the block runs; yields the dict its
    result is put into (ok, failed, errors, hosts)."""
    stop = cluster.data.parent / "loadgen.stop"
    stop.unlink(missing_ok=True)
    out = open(cluster.data.parent / "loadgen.out", "w+")
    gen = cluster.world.spawn("laptop", sys.executable, "-c", LOADGEN, "192.168.1.2", str(NODE_PORT),
                              str(stop), stdout=out, stderr=out)
    result: dict = {}
    try:
        time.sleep(1)
        yield result
        time.sleep(1)
    finally:
        stop.touch()
        gen.wait(30)
        out.seek(0)
        text = out.read()
        out.close()
    result.update(json.loads(text.strip().splitlines()[-1]))


def no_failures(result: dict) -> bool:
    total = result["ok"] + result["failed"]
    assert result["failed"] == 0, f"{result['failed']} of {total} requests failed: {result['errors']}"
    return True


def test_rolling_updates_and_undo_drop_no_request(cluster):
    before = {p["metadata"]["name"] for p in running_pods(cluster)}
    with load(cluster) as result:
        cluster.kubectl("set", "env", "deploy/web", "COLOR=blue")
        rollout(cluster)
        cluster.kubectl("set", "image", "deploy/web", f"netexec={IMAGE2}")
        rollout(cluster)
        cluster.kubectl("rollout", "undo", "deploy/web")
        rollout(cluster)
    history = cluster.kubectl("rollout", "history", "deploy/web")
    assert no_failures(result) and result["ok"] > 100
    after = {p["metadata"]["name"] for p in running_pods(cluster)}
    assert not (after & before) and len(after) == 3
    assert set(result["hosts"]) - before  # new pods answered during the run
    pod = running_pods(cluster)[0]
    c = pod["spec"]["containers"][0]
    assert c["image"] == IMAGE and {"name": "COLOR", "value": "blue"} in c["env"]  # undo went to rev 2
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "3", "4"]


def progressing(cluster) -> str:
    d = cluster.json("get", "deploy", "web")
    return next(c["reason"] for c in d["status"]["conditions"] if c["type"] == "Progressing")


def test_a_rollout_that_never_gets_ready_stops_and_the_old_pods_keep_serving(cluster):
    cluster.kubectl("patch", "deploy/web", "--type=merge", "-p", '{"spec":{"progressDeadlineSeconds":6}}')
    old = {p["metadata"]["name"] for p in running_pods(cluster)}
    with load(cluster) as result:
        # the new pods listen on the wrong port: their readiness probe never passes
        cluster.kubectl("patch", "deploy/web", "--type=json", "-p", json.dumps([
            {"op": "replace", "path": "/spec/template/spec/containers/0/args",
             "value": ["netexec", "--http-port=9999"]}]))
        poll(lambda: progressing(cluster) == "ProgressDeadlineExceeded", 45, "ProgressDeadlineExceeded")
        sizes = sorted(r["spec"]["replicas"] for r in cluster.json("get", "rs")["items"] if r["spec"]["replicas"])
        assert sizes == [1, 3]  # maxSurge 1, maxUnavailable 0: one new pod, all old ones kept
        assert old <= {p["metadata"]["name"] for p in running_pods(cluster)}
        assert hostnames_from_laptop(cluster, 10) <= old
        d = cluster.json("get", "deploy", "web")
        st = d["status"]
        assert (st["replicas"], st.get("updatedReplicas"), st["availableReplicas"]) == (4, 1, 3)
        cluster.kubectl("rollout", "undo", "deploy/web")
        rollout(cluster)
    assert no_failures(result)
    assert progressing(cluster) == "NewReplicaSetAvailable"
    assert {p["metadata"]["name"] for p in running_pods(cluster)} == old


def test_logs_of_the_deployment(cluster):
    out = cluster.kubectl("logs", "deploy/web")
    assert "Started HTTP server on port 8080" in out
