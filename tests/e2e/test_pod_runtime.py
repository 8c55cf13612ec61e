"""The pod runtime through kubectl on a real single-node cluster (issue 4): container logs with
timestamps, lifecycle hooks, envFrom, and the agent killed halfway through pod starts.

Everything runs in namespaces this module creates (unique prefix) and removes, on failure too.
The agent is armed with one-shot fault points (svcnet.agent.runtime.faults): a test creates a
token file, and the agent exits as if SIGKILLed when it reaches that step of a pod start; the
server restarts it.
"""

from __future__ import annotations

import json
import os

import pytest

from svcnet.agent.runtime import faults
from svcnet.agent.runtime.containers import processes_in_netns
from svcnet.agent.runtime.sandbox import find_holders, holder_tag
from tests.e2e.cluster import poll, running_cluster, unique_prefix

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
STEPS = ("ip-allocated", "holder-started", "veth-added", "sandbox-ready", "container-spawned")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tokens = tmp_path_factory.mktemp("faults")
    before = os.environ.get(faults.ENV)
    os.environ[faults.ENV] = ",".join(f"{s}:{tokens / s}" for s in STEPS)
    try:
        with running_cluster(unique_prefix("r"), tmp_path_factory.mktemp("rt") / "node") as c:
            c.tokens = tokens
            yield c
    finally:
        if before is None:
            os.environ.pop(faults.ENV, None)
        else:
            os.environ[faults.ENV] = before


def apply(cluster, manifest: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def pod(name: str, containers: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"t": "rt"}},
            "spec": dict({"containers": containers, "terminationGracePeriodSeconds": 5}, **spec)}


def netexec(**extra) -> dict:
    return dict({"name": "netexec", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                    "periodSeconds": 1}}, **extra)


def ready(cluster, name: str) -> bool:
    return cluster.kubectl("get", "pod", name, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                           check=False) == "True"


def events_for(cluster, name: str) -> list[dict]:
    return [e for e in cluster.json("get", "events")["items"]
            if e["involvedObject"]["name"] == name]


def test_kubectl_logs_timestamps_since_and_follow(cluster):
    apply(cluster, pod("talker", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", "echo first; echo oops >&2; sleep 2; echo second; "
                    "while true; do sleep 1; echo tick; done"]}]))
    poll(lambda: "second" in cluster.kubectl("logs", "talker", check=False), 60, "both lines")
    assert cluster.kubectl("logs", "talker").splitlines()[:3] == ["first", "oops", "second"]
    stamped = cluster.kubectl("logs", "talker", "--timestamps").splitlines()[:3]
    assert [line.split(" ", 1)[1] for line in stamped] == ["first", "oops", "second"]
    stamps = [line.split(" ", 1)[0] for line in stamped]
    assert all(s.endswith("Z") and "T" in s for s in stamps) and stamps == sorted(stamps)
    assert cluster.kubectl("logs", "talker", "--tail=1") in ("second\n", "tick\n")
    assert cluster.kubectl("logs", "talker", "--limit-bytes=3") == "fir"
    # "second" came two seconds after the others: since its own time, it comes first
    assert cluster.kubectl("logs", "talker", f"--since-time={stamps[2]}").startswith("second\n")
    r = cluster.world.run("node", "kubectl", f"--kubeconfig={cluster.kubeconfig}", "get", "--raw",
                          "/api/v1/namespaces/default/pods/talker/log?tailLines=-1")
    assert r.returncode != 0 and "must be greater than or equal to 0" in r.stderr
    r = cluster.world.run("node", "kubectl", f"--kubeconfig={cluster.kubeconfig}", "get", "--raw",
                          "/api/v1/namespaces/default/pods/talker/log?sinceTime=yesterday")
    assert r.returncode != 0 and "(BadRequest)" in r.stderr and "sinceTime" in r.stderr
    # follow: what the container writes later arrives on the open stream, stamped
    out = cluster.data.parent / "follow.out"
    ticks = cluster.kubectl("logs", "talker").count("tick")
    follow = cluster.world.spawn("node", "kubectl", f"--kubeconfig={cluster.kubeconfig}", "logs",
                                 "-f", "--timestamps", "talker", stdout=open(out, "wb"))
    try:
        poll(lambda: out.read_text().count(" tick\n") > ticks + 1, 30, "new lines while following")
    finally:
        follow.terminate()
        follow.wait(10)
    # following a container that exits ends with it, everything it wrote included
    apply(cluster, pod("quitter", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", "echo a; sleep 2; echo b"]}], restartPolicy="Never"))
    poll(lambda: "a" in cluster.kubectl("logs", "quitter", check=False), 60, "quitter started")
    r = cluster.world.run("node", "kubectl", f"--kubeconfig={cluster.kubeconfig}", "logs", "-f",
                          "quitter", timeout=30)
    assert (r.returncode, r.stdout) == (0, "a\nb\n")


def test_hooks_and_env_from_through_the_api(cluster):
    apply(cluster, pod("configured", [{
        "name": "c", "image": "busybox", "command": ["sh", "-c", "env; sleep 1000"],
        "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}],
        "env": [{"name": "ONE", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                 "key": "color"}}}]}]))

    def waiting_reason():
        statuses = cluster.json("get", "pod", "configured")["status"].get("containerStatuses")
        return ((statuses or [{}])[0].get("state") or {}).get("waiting")

    waiting = poll(lambda: (w := waiting_reason()) and w.get("reason") != "ContainerCreating" and w,
                   30, "CreateContainerConfigError")
    assert waiting == {"reason": "CreateContainerConfigError",
                       "message": 'configmap "settings" not found'}
    apply(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                    "data": {"color": "blue", "size": "L"}})
    poll(lambda: "CFG_size=L" in cluster.kubectl("logs", "configured", check=False), 30,
         "the container to start once its ConfigMap exists")
    env = cluster.kubectl("logs", "configured").splitlines()
    assert "CFG_color=blue" in env and "ONE=blue" in env

    apply(cluster, pod("badhook", [netexec(lifecycle={
        "postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}})]))
    event = poll(lambda: next((e for e in events_for(cluster, "badhook")
                               if e["reason"] == "FailedPostStartHook"), None),
                 60, "a FailedPostStartHook event")
    assert event["type"] == "Warning" and "exited with 7" in event["message"]
    assert event["involvedObject"]["fieldPath"] == "spec.containers{netexec}"
    cluster.kubectl("delete", "pod", "badhook", "configured", "talker", "quitter", "--wait=false")


def test_volume_mounts_are_not_mounted_and_say_so(cluster):
    """Containers are processes on the node's filesystem: a volumeMount is not mounted, and the
    pod says so with a FailedMount Warning Event (once), rather than silently."""
    apply(cluster, pod("volumed", [{"name": "c", "image": "busybox", "command": ["sleep", "1000"],
                                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                       volumes=[{"name": "scratch", "emptyDir": {}}]))
    event = poll(lambda: next((e for e in events_for(cluster, "volumed")
                               if e["reason"] == "FailedMount"), None), 60, "a FailedMount event")
    assert event["type"] == "Warning" and "not mounted: scratch at /scratch" in event["message"]
    assert event["involvedObject"]["fieldPath"] == "spec.containers{c}"
    poll(lambda: cluster.json("get", "pod", "volumed")["status"]["phase"] == "Running", 30,
         "the pod to run without its volume")
    assert [e["reason"] for e in events_for(cluster, "volumed")].count("FailedMount") == 1
    cluster.kubectl("delete", "pod", "volumed", "--wait=false")


def test_agent_killed_halfway_through_pod_starts_recovers_without_leaks(cluster):
    names = []
    for step in STEPS:
        token = cluster.tokens / step
        token.touch()
        before = cluster.agent_pid()
        name = f"fault-{step}"
        names.append(name)
        apply(cluster, pod(name, [netexec()]))
        poll(lambda: not token.exists(), 60, f"the agent to reach {step}")
        poll(lambda: cluster.agent_pid() not in (0, before), 30, "the agent to be restarted")
        poll(lambda: ready(cluster, name), 60, f"{name} Ready after the restart")

    pods = {p["metadata"]["name"]: p for p in cluster.json("get", "pods", "-l", "t=rt")["items"]}
    ips = [pods[n]["status"]["podIP"] for n in names]
    assert len(set(ips)) == len(names) and all(ip.startswith("10.244.0.") for ip in ips)
    for n in names:
        assert pods[n]["status"]["podIPs"] == [{"ip": pods[n]["status"]["podIP"]}]
        rc, body = cluster.curl("node", f"http://{pods[n]['status']['podIP']}:8080/hostname")
        assert (rc, body) == (0, n)
    # Nothing leaked: one sandbox holder, one veth, one address and one container process per
    # pod; nothing else.
    uids = {pods[n]["metadata"]["uid"]: n for n in names}
    remaining = {p["metadata"]["uid"] for p in pods.values()}
    holders = find_holders(holder_tag(cluster.data))
    assert sorted(holders.values()) == sorted(remaining)
    veths = cluster.world.run("node", "ip", "-o", "link", "show", "master", "svcnet0").stdout
    assert len(veths.strip().splitlines()) == len(remaining)
    ipam = json.loads((cluster.data / "pods" / "ipam.json").read_text())["allocations"]
    assert set(ipam) == remaining
    for holder, uid in holders.items():
        if uid in uids:
            inside = [p for p in processes_in_netns(holder) if p != holder]
            assert len(inside) == 1, (uids[uid], inside)
    cluster.kubectl("delete", "pod", *names, "--wait=false")
