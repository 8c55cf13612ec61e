"""Deployments and ReplicaSets against a real `svcnet server --no-agent`, driven by kubectl 1.32.

There is no node agent here, so no pod runs: a small fake kubelet (`Kubelet`) writes pod status
through `pods/NAME/status` (phase Running, a pod IP, the Ready condition) for the pods its
predicate accepts, as kwok does. Pods have no node, so a delete removes them at once.

The module runs its own server, because one test restarts its controller manager.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest

from .conftest import Kubectl, start_server, wait_for

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
IMAGE2 = "registry.k8s.io/e2e-test-images/agnhost:2.52"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("deploy") / "data")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kc(srv, tmp_path_factory) -> Kubectl:
    return Kubectl(srv, tmp_path_factory.mktemp("kubectl-cache"))


_n = [0]


@pytest.fixture
def ns(kc) -> str:
    _n[0] += 1
    name = f"d{os.getpid() % 10000}-{_n[0]}"
    kc("create", "namespace", name)
    yield name
    kc("delete", "namespace", name, "--wait=false", check=False)


class Kubelet:
    """Marks the pods of one namespace Running and Ready (those `ready(pod)` accepts)."""

    def __init__(self, srv, ns: str, ready=lambda pod: True, node: str = ""):
        """`node`: bind pods to this Node first (and finish their graceful deletion)."""
        self.srv, self.ns, self.ready, self.node = srv, ns, ready, node
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._ip = 0

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a kubelet keeps going
                pass
            self._stop.wait(0.1)

    def tick(self) -> None:
        _, _, lst = self.srv.request("GET", f"/api/v1/namespaces/{self.ns}/pods")
        for pod in lst.get("items", []):
            st = pod.get("status") or {}
            path = f"/api/v1/namespaces/{self.ns}/pods/{pod['metadata']['name']}"
            if self.node and pod["metadata"].get("deletionTimestamp"):
                self.srv.request("DELETE", path, {"gracePeriodSeconds": 0})
                continue
            if self.node and not pod["spec"].get("nodeName"):
                self.srv.request("POST", path + "/binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod["metadata"]["name"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}})
                continue
            if pod["metadata"].get("deletionTimestamp") or not self.ready(pod):
                continue
            if any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or ()):
                continue
            self._ip += 1
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            pod["status"] = {"phase": "Running", "podIP": f"10.200.{self._ip // 250}.{self._ip % 250 + 1}",
                             "startTime": now,
                             "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]}
            self.srv.request("PUT", path + "/status", pod)


def deployment(name: str, replicas: int = 3, image: str = IMAGE, **spec) -> str:
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"containers": [{"name": "main", "image": image,
                                                        "args": ["netexec"]}]}}, **spec}}
    return json.dumps(d)


def pods(kc, ns: str, selector: str = "") -> list[dict]:
    args = ["-n", ns, "get", "pods"] + (["-l", selector] if selector else [])
    return [p for p in kc.json(*args)["items"] if not p["metadata"].get("deletionTimestamp")]


def rss(kc, ns: str) -> list[dict]:
    return kc.json("-n", ns, "get", "rs")["items"]


def rollout_status(kc, ns: str, name: str, timeout: str = "60s") -> str:
    return kc("-n", ns, "rollout", "status", f"deploy/{name}", f"--timeout={timeout}", timeout=90).stdout


def images(kc, ns: str, name: str) -> set[str]:
    return {c["image"] for p in pods(kc, ns, f"app={name}") for c in p["spec"]["containers"]}


# ---- create, get, describe, ownership ----------------------------------------------------------------

def test_create_deployment_rolls_out_and_prints_like_kubernetes(srv, kc, ns):
    with Kubelet(srv, ns):
        kc("-n", ns, "create", "deployment", "web", f"--image={IMAGE}", "--replicas=3", "--port=8080",
           "--", "/agnhost", "netexec")
        out = rollout_status(kc, ns, "web")
        assert 'deployment "web" successfully rolled out' in out
    [rs] = rss(kc, ns)
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"  # 25% surge rounds up
    ref = rs["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == ("Deployment", "web", True, True)
    ps = pods(kc, ns, "app=web")
    assert len(ps) == 3
    for p in ps:
        assert p["metadata"]["name"].startswith(f"web-{h}-")
        assert p["metadata"]["labels"]["pod-template-hash"] == h
        [r] = p["metadata"]["ownerReferences"]
        assert (r["kind"], r["name"], r["uid"], r["controller"], r["blockOwnerDeletion"]) == (
            "ReplicaSet", rs["metadata"]["name"], rs["metadata"]["uid"], True, True)
    d = kc.json("-n", ns, "get", "deploy", "web")
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"],
            st["observedGeneration"]) == (3, 3, 3, 3, d["metadata"]["generation"])
    assert not st.get("unavailableReplicas")
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds == {"Available": ("True", "MinimumReplicasAvailable"),
                     "Progressing": ("True", "NewReplicaSetAvailable")}
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    rs_status = rss(kc, ns)[0]["status"]
    assert (rs_status["replicas"], rs_status["fullyLabeledReplicas"], rs_status["readyReplicas"],
            rs_status["availableReplicas"]) == (3, 3, 3, 3)

    wide = kc("-n", ns, "get", "deploy,rs,pods", "-o", "wide").stdout
    assert "deployment.apps/web   3/3     3            3" in wide
    assert f"app=web,pod-template-hash={h}" in wide
    desc = kc("-n", ns, "describe", "deploy", "web").stdout
    assert f"NewReplicaSet:   web-{h} (3/3 replicas created)" in desc
    assert f"Scaled up replica set web-{h} from 0 to 3" in desc
    assert "3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in desc
    # settled: the controllers write nothing more (no status ping-pong)
    def versions():
        return {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                for o in kc.json("-n", ns, "get", "deploy,rs,pods")["items"]}
    before = versions()
    time.sleep(2)
    assert versions() == before


def test_scale_through_the_scale_subresource(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 2))
    with Kubelet(srv, ns):
        rollout_status(kc, ns, "web")
        kc("-n", ns, "scale", "deploy/web", "--replicas=5")
        wait_for(lambda: len(pods(kc, ns, "app=web")) == 5, 30, what="5 pods")
        rollout_status(kc, ns, "web")
        kc("-n", ns, "scale", "deploy/web", "--replicas=1")
        wait_for(lambda: len(pods(kc, ns, "app=web")) == 1, 30, what="1 pod")
        rollout_status(kc, ns, "web")
    scale = json.loads(kc("get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale").stdout)
    assert scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1
    [rs] = rss(kc, ns)
    events = kc("-n", ns, "get", "events", "--field-selector", "involvedObject.name=web",
                "-o", "jsonpath={.items[*].message}").stdout
    name = rs["metadata"]["name"]
    for msg in (f"Scaled up replica set {name} from 0 to 2", f"Scaled up replica set {name} from 2 to 5",
                f"Scaled down replica set {name} from 5 to 1"):
        assert msg in events
    # the ReplicaSet's own scale subresource works too; the Deployment puts it back
    kc("-n", ns, "scale", f"rs/{name}", "--replicas=3")
    wait_for(lambda: kc.json("-n", ns, "get", "rs", name)["spec"]["replicas"] == 1
             and len(pods(kc, ns, "app=web")) == 1, 30, what="the Deployment to restore its size")


# ---- rolling updates, history, undo ------------------------------------------------------------------

def test_set_image_history_and_undo(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 4))
    with Kubelet(srv, ns):
        rollout_status(kc, ns, "web")
        kc("-n", ns, "annotate", "deploy/web", "kubernetes.io/change-cause=first")
        first = kc.json("-n", ns, "get", "rs")["items"][0]["metadata"]["name"]
        kc("-n", ns, "set", "image", "deploy/web", f"main={IMAGE2}")
        kc("-n", ns, "annotate", "deploy/web", "--overwrite", "kubernetes.io/change-cause=second")
        rollout_status(kc, ns, "web")
        assert images(kc, ns, "web") == {IMAGE2}
        by_name = {r["metadata"]["name"]: r for r in rss(kc, ns)}
        assert len(by_name) == 2 and by_name[first]["spec"]["replicas"] == 0
        hist = kc("-n", ns, "rollout", "history", "deploy/web").stdout
        assert "1         first" in hist and "2         second" in hist
        rev1 = kc("-n", ns, "rollout", "history", "deploy/web", "--revision=1").stdout
        assert IMAGE in rev1 and IMAGE2 not in rev1

        out = kc("-n", ns, "rollout", "undo", "deploy/web").stdout
        assert "rolled back" in out
        rollout_status(kc, ns, "web")
        assert images(kc, ns, "web") == {IMAGE}
    d = kc.json("-n", ns, "get", "deploy", "web")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert "pod-template-hash" not in d["spec"]["template"]["metadata"]["labels"]
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    back = kc.json("-n", ns, "get", "rs", first)
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert back["spec"]["replicas"] == 4 and len(rss(kc, ns)) == 2  # the old ReplicaSet came back
    hist = kc("-n", ns, "rollout", "history", "deploy/web").stdout
    assert "2         second" in hist and "3         first" in hist and "\n1  " not in hist


def test_rolling_update_respects_max_surge_and_max_unavailable(srv, kc, ns):
    """A rollout whose new pods never become ready stops at maxUnavailable, reports
    ProgressDeadlineExceeded, and the old pods keep running."""
    spec = {"progressDeadlineSeconds": 4,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}}
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 4, **spec))
    with Kubelet(srv, ns, ready=lambda p: p["spec"]["containers"][0]["image"] == IMAGE):
        rollout_status(kc, ns, "web")
        kc("-n", ns, "set", "image", "deploy/web", f"main={IMAGE2}")

        def settled():
            sizes = sorted((r["spec"]["template"]["spec"]["containers"][0]["image"], r["spec"]["replicas"])
                           for r in rss(kc, ns))
            return sizes == [(IMAGE2, 2), (IMAGE, 3)]
        wait_for(settled, 30, what="old 3 / new 2 (surge 1, unavailable 1)")
        p = kc("-n", ns, "rollout", "status", "deploy/web", "--timeout=30s", check=False, timeout=60)
        assert p.returncode != 0
        assert 'deployment "web" exceeded its progress deadline' in p.stderr
    d = kc.json("-n", ns, "get", "deploy", "web")
    prog = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert prog["message"].endswith("has timed out progressing.")
    avail = next(c for c in d["status"]["conditions"] if c["type"] == "Available")
    assert avail["status"] == "True"  # 3 ready = replicas - maxUnavailable
    ready_old = [p for p in pods(kc, ns, "app=web") if p["spec"]["containers"][0]["image"] == IMAGE
                 and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])]
    assert len(ready_old) == 3
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"], st["unavailableReplicas"]) == (5, 2, 3, 2)


def test_percentages_round_surge_up_and_unavailable_down(srv, kc, ns):
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "30%", "maxUnavailable": "30%"}}}
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 5, **spec))
    with Kubelet(srv, ns, ready=lambda p: p["spec"]["containers"][0]["image"] == IMAGE):
        rollout_status(kc, ns, "web")
        [rs] = rss(kc, ns)
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "7"  # 5 + ceil(1.5)
        kc("-n", ns, "set", "image", "deploy/web", f"main={IMAGE2}")

        def sizes():
            return sorted((r["spec"]["template"]["spec"]["containers"][0]["image"], r["spec"]["replicas"])
                          for r in rss(kc, ns))
        # surge ceil(1.5)=2 -> 7 pods at most; unavailable floor(1.5)=1 -> old goes to 4
        wait_for(lambda: sizes() == [(IMAGE2, 3), (IMAGE, 4)], 30, what=f"sizes {sizes()}")
        time.sleep(1)  # nothing further may happen while the new pods are not ready
        assert sizes() == [(IMAGE2, 3), (IMAGE, 4)]


def test_set_env_and_restart_roll_out_new_replica_sets(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 2))
    with Kubelet(srv, ns):
        rollout_status(kc, ns, "web")
        kc("-n", ns, "set", "env", "deploy/web", "COLOR=blue")
        rollout_status(kc, ns, "web")
        for p in pods(kc, ns, "app=web"):
            assert {"name": "COLOR", "value": "blue"} in p["spec"]["containers"][0]["env"]
        kc("-n", ns, "rollout", "restart", "deploy/web")
        rollout_status(kc, ns, "web")
    cur = [r for r in rss(kc, ns) if r["spec"]["replicas"]]
    assert len(rss(kc, ns)) == 3 and len(cur) == 1
    assert "kubectl.kubernetes.io/restartedAt" in cur[0]["spec"]["template"]["metadata"]["annotations"]
    assert cur[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_pause_and_resume(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 2))
    with Kubelet(srv, ns):
        rollout_status(kc, ns, "web")
        kc("-n", ns, "set", "env", "deploy/web", "A=1")  # a second revision, so undo has a target
        rollout_status(kc, ns, "web")
        kc("-n", ns, "rollout", "pause", "deploy/web")
        kc("-n", ns, "set", "image", "deploy/web", f"main={IMAGE2}")
        wait_for(lambda: next(c for c in kc.json("-n", ns, "get", "deploy", "web")["status"]["conditions"]
                              if c["type"] == "Progressing")["reason"] == "DeploymentPaused", 20,
                 what="DeploymentPaused")
        p = kc("-n", ns, "rollout", "undo", "deploy/web", check=False)
        assert "you cannot rollback a paused deployment" in p.stderr
        kc("-n", ns, "scale", "deploy/web", "--replicas=3")  # a paused Deployment still scales
        wait_for(lambda: len(pods(kc, ns, "app=web")) == 3, 30, what="3 pods while paused")
        assert len(rss(kc, ns)) == 2 and images(kc, ns, "web") == {IMAGE}
        kc("-n", ns, "rollout", "resume", "deploy/web")
        rollout_status(kc, ns, "web")
        assert images(kc, ns, "web") == {IMAGE2} and len(pods(kc, ns, "app=web")) == 3


def test_recreate_stops_old_pods_before_starting_new_ones(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 3, strategy={"type": "Recreate"}))
    with Kubelet(srv, ns):
        rollout_status(kc, ns, "web")
        seen: list[set[str]] = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                seen.append({p["spec"]["containers"][0]["image"] for p in pods(kc, ns, "app=web")})
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        kc("-n", ns, "set", "image", "deploy/web", f"main={IMAGE2}")
        rollout_status(kc, ns, "web")
        stop.set()
        t.join()
    assert images(kc, ns, "web") == {IMAGE2}
    assert not any(s == {IMAGE, IMAGE2} for s in seen)  # never both at once


def test_revision_history_limit_removes_old_replica_sets(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 1, revisionHistoryLimit=1))
    with Kubelet(srv, ns):
        for i in range(3):
            kc("-n", ns, "set", "env", "deploy/web", f"N={i}")
            rollout_status(kc, ns, "web")
        wait_for(lambda: len(rss(kc, ns)) == 2, 30, what="one old ReplicaSet kept")
    revs = sorted(int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for r in rss(kc, ns))
    assert revs == [3, 4]


# ---- ReplicaSets on their own ------------------------------------------------------------------------

def replicaset(name: str, replicas: int, **extra) -> str:
    return json.dumps({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
                       "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                                "template": {"metadata": {"labels": {"app": name, "tier": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": IMAGE}]}},
                                **extra}})


def test_replica_set_adopts_orphans_releases_strays_and_heals(srv, kc, ns):
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "rs1"}},
              "spec": {"containers": [{"name": "c", "image": IMAGE}]}}
    kc("-n", ns, "create", "-f", "-", input=json.dumps(orphan))
    kc("-n", ns, "apply", "-f", "-", input=replicaset("rs1", 2))
    uid = kc.json("-n", ns, "get", "rs", "rs1")["metadata"]["uid"]
    wait_for(lambda: len(pods(kc, ns, "app=rs1")) == 2, 20, what="2 pods")
    o = kc.json("-n", ns, "get", "pod", "orphan")
    assert o["metadata"]["ownerReferences"][0]["uid"] == uid  # adopted, so only one was created
    st = kc.json("-n", ns, "get", "rs", "rs1")["status"]
    assert st.get("fullyLabeledReplicas", 0) == 1  # the orphan lacks the template's tier label
    # a pod whose labels stop matching is released and replaced
    kc("-n", ns, "label", "pod", "orphan", "app=gone", "--overwrite")
    wait_for(lambda: not kc.json("-n", ns, "get", "pod", "orphan")["metadata"].get("ownerReferences"), 20,
             what="release")
    wait_for(lambda: len(pods(kc, ns, "app=rs1")) == 2, 20, what="a replacement")
    # self-healing
    victim = pods(kc, ns, "app=rs1")[0]["metadata"]["name"]
    kc("-n", ns, "delete", "pod", victim)
    wait_for(lambda: len(pods(kc, ns, "app=rs1")) == 2
             and victim not in {p["metadata"]["name"] for p in pods(kc, ns, "app=rs1")}, 20, what="heal")
    events = kc("-n", ns, "get", "events", "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "SuccessfulCreate" in events


def test_scale_down_deletes_not_ready_pods_first(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=replicaset("rs1", 4))
    wait_for(lambda: len(pods(kc, ns, "app=rs1")) == 4, 20, what="4 pods")
    names = sorted(p["metadata"]["name"] for p in pods(kc, ns, "app=rs1"))
    ready = set(names[:2])
    with Kubelet(srv, ns, ready=lambda p: p["metadata"]["name"] in ready):
        wait_for(lambda: kc.json("-n", ns, "get", "rs", "rs1")["status"].get("readyReplicas") == 2, 20,
                 what="2 ready")
        kc("-n", ns, "scale", "rs/rs1", "--replicas=2")
        wait_for(lambda: {p["metadata"]["name"] for p in pods(kc, ns, "app=rs1")} == ready, 20,
                 what="the not-ready pods deleted")


def test_min_ready_seconds_delays_availability(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=replicaset("rs1", 1, minReadySeconds=2))
    with Kubelet(srv, ns):
        wait_for(lambda: kc.json("-n", ns, "get", "rs", "rs1")["status"].get("readyReplicas") == 1, 20,
                 what="ready")
        t0 = time.monotonic()
        assert not kc.json("-n", ns, "get", "rs", "rs1")["status"].get("availableReplicas")
        wait_for(lambda: kc.json("-n", ns, "get", "rs", "rs1")["status"].get("availableReplicas") == 1, 20,
                 what="available")
        assert time.monotonic() - t0 >= 1.0


# ---- bad input ---------------------------------------------------------------------------------------

def test_invalid_deployments_are_refused_with_kubernetes_texts(kc, ns):
    bad = json.loads(deployment("web"))
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    p = kc("-n", ns, "apply", "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode != 0
    assert ('The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: '
            'map[string]string{"app":"web"}: `selector` does not match template `labels`') in p.stderr
    bad = json.loads(deployment("web"))
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = "Bad_Name"
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    p = kc("-n", ns, "apply", "-f", "-", input=json.dumps(bad), check=False)
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in p.stderr
    assert "spec.template.spec.containers[0].name: Invalid value: \"Bad_Name\"" in p.stderr
    kc("-n", ns, "apply", "-f", "-", input=deployment("web"))
    p = kc("-n", ns, "patch", "deploy", "web", "--type=merge", "-p",
           '{"spec":{"selector":{"matchLabels":{"app":"new"}},"template":{"metadata":{"labels":{"app":"new"}}}}}',
           check=False)
    assert "field is immutable" in p.stderr


# ---- expose, delete, controller restart --------------------------------------------------------------

def test_expose_deployment_selects_its_pods(srv, kc, ns):
    kc("-n", ns, "create", "deployment", "web", f"--image={IMAGE}", "--replicas=2", "--port=8080")
    kc("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": ns}}))
    with Kubelet(srv, ns, node=ns):
        rollout_status(kc, ns, "web")
        kc("-n", ns, "expose", "deployment", "web", "--port=80", "--target-port=8080")
        svc = kc.json("-n", ns, "get", "svc", "web")
        assert svc["spec"]["selector"] == {"app": "web"}
        assert svc["spec"]["ports"][0]["targetPort"] == 8080
        wait_for(lambda: len([e for s in kc.json("-n", ns, "get", "endpointslices", "-l",
                                                 "kubernetes.io/service-name=web")["items"]
                              for e in s.get("endpoints") or ()]) == 2, 20, what="2 endpoints")
    kc("delete", "node", ns)


def test_delete_cascades_and_orphan_keeps(srv, kc, ns):
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 2))
    kc("-n", ns, "apply", "-f", "-", input=deployment("keep", 1))
    wait_for(lambda: len(pods(kc, ns, "app=web")) == 2 and len(pods(kc, ns, "app=keep")) == 1, 20, what="pods")
    kc("-n", ns, "delete", "deploy", "web")
    wait_for(lambda: not pods(kc, ns, "app=web") and not [r for r in rss(kc, ns)
                                                          if r["metadata"]["name"].startswith("web-")],
             30, what="cascade")
    kc("-n", ns, "apply", "-f", "-", input=deployment("fg", 3))
    wait_for(lambda: len(pods(kc, ns, "app=fg")) == 3, 20, what="fg pods")
    kc("-n", ns, "delete", "deploy", "fg", "--cascade=foreground", timeout=60)  # waits for it to be gone
    assert not kc.json("-n", ns, "get", "pods", "-l", "app=fg")["items"]
    assert not [r for r in rss(kc, ns) if r["metadata"]["name"].startswith("fg-")]
    kc("-n", ns, "delete", "deploy", "keep", "--cascade=orphan")
    wait_for(lambda: [r for r in rss(kc, ns) if not r["metadata"].get("ownerReferences")], 20,
             what="the orphaned ReplicaSet without its ownerReference")
    [rs] = rss(kc, ns)
    assert rs["metadata"]["name"].startswith("keep-") and len(pods(kc, ns, "app=keep")) == 1


def _controller_manager_pid(srv) -> int:
    out = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in out:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        if "controller-manager" in cmd:
            return int(pid)
    raise AssertionError(f"no controller manager under {srv.proc.pid}: {out}")


def test_controller_restart_mid_rollout_continues(srv, kc, ns):
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 4, **spec))
    allow = {"new": False}
    kubelet = Kubelet(srv, ns, ready=lambda p: p["spec"]["containers"][0]["image"] == IMAGE or allow["new"])
    with kubelet:
        rollout_status(kc, ns, "web")
        kc("-n", ns, "set", "image", "deploy/web", f"main={IMAGE2}")
        wait_for(lambda: len(rss(kc, ns)) == 2, 20, what="the new ReplicaSet")
        old_pid = _controller_manager_pid(srv)
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: _controller_manager_pid(srv) != old_pid, 30, what="a new controller manager")
        allow["new"] = True
        rollout_status(kc, ns, "web", "90s")
    assert images(kc, ns, "web") == {IMAGE2} and len(pods(kc, ns, "app=web")) == 4
    assert len(rss(kc, ns)) == 2  # no duplicate ReplicaSet after the restart


def test_a_name_collision_bumps_the_collision_count(kc, ns):
    """An unrelated ReplicaSet already holding `<deployment>-<hash>`: the controller counts a
    collision and names its ReplicaSet with the next hash."""
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 0))
    wait_for(lambda: rss(kc, ns), 20, what="the ReplicaSet")
    [taken] = rss(kc, ns)
    name = taken["metadata"]["name"]
    kc("-n", ns, "delete", "deploy", "web", "--cascade=orphan")
    wait_for(lambda: not kc.json("-n", ns, "get", "rs", name)["metadata"].get("ownerReferences"), 20,
             what="the orphaned ReplicaSet")
    kc("-n", ns, "label", "rs", name, "app=someone-else", "--overwrite")  # so it is not adopted
    kc("-n", ns, "apply", "-f", "-", input=deployment("web", 0))
    wait_for(lambda: kc.json("-n", ns, "get", "deploy", "web")["status"].get("collisionCount") == 1, 20,
             what="collisionCount 1")
    wait_for(lambda: len(rss(kc, ns)) == 2, 20, what="a second ReplicaSet")
    mine = next(r for r in rss(kc, ns) if r["metadata"]["name"] != name)
    assert mine["metadata"]["ownerReferences"][0]["name"] == "web"
    assert mine["metadata"]["labels"]["pod-template-hash"] != taken["metadata"]["labels"]["pod-template-hash"]
    assert not kc.json("-n", ns, "get", "rs", name)["metadata"].get("ownerReferences")
