"""The LoadBalancer controller against a real `svcnet server --lb-pool ...` (no agent), driven
with kubectl: allocation, release, type changes, exhaustion, sharing, restart safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from .conftest import Kubectl, start_server, wait_for

POOL = "192.168.1.240-192.168.1.242"


@pytest.fixture
def lb(tmp_path):
    s = start_server(tmp_path / "data", extra=["--lb-pool", POOL])
    k = Kubectl(s, tmp_path / "cache")
    yield s, k
    s.stop()


def apply_lb(k: Kubectl, name: str, port: int = 80, annotations: dict | None = None, **spec):
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"port": port, "targetPort": 8080}], **spec}}
    k("apply", "-f", "-", input=json.dumps(body))


def ingress(k: Kubectl, name: str) -> list[str]:
    st = k.json("get", "svc", name)["status"].get("loadBalancer") or {}
    return [i["ip"] for i in st.get("ingress") or ()]


def wait_ingress(k: Kubectl, name: str, want: list[str]) -> None:
    wait_for(lambda: ingress(k, name) == want, 20, what=f"{name} ingress {want} (has {ingress(k, name)})")


def events(k: Kubectl, name: str) -> list[tuple[str, str, str]]:
    lst = k.json("get", "events", "--field-selector", f"involvedObject.name={name}")
    return [(e["type"], e["reason"], e["message"]) for e in lst["items"]]


def test_allocate_release_type_change_exhaust_and_restart(lb, tmp_path):
    server, k = lb
    apply_lb(k, "a")
    wait_ingress(k, "a", ["192.168.1.240"])
    assert ("Normal", "IPAllocated", 'Assigned IP ["192.168.1.240"]') in events(k, "a")
    out = k("get", "svc", "a").stdout
    assert "192.168.1.240" in out.splitlines()[1]  # EXTERNAL-IP column

    apply_lb(k, "b")
    apply_lb(k, "c")
    wait_ingress(k, "b", ["192.168.1.241"])
    wait_ingress(k, "c", ["192.168.1.242"])
    apply_lb(k, "d")  # the pool is exhausted: pending with an Event
    wait_for(lambda: any(r == "AllocationFailed" and "no available IPs" in m
                         for _, r, m in events(k, "d")), 20, what="AllocationFailed event")
    assert ingress(k, "d") == []
    assert "<pending>" in k("get", "svc", "d").stdout

    # deleting a releases its address, and the pending one gets it
    k("delete", "svc", "a")
    wait_ingress(k, "d", ["192.168.1.240"])

    # a type change releases (the API server clears the status) and re-acquires
    k("patch", "svc", "b", "-p", '{"spec": {"type": "ClusterIP"}}')
    wait_for(lambda: ingress(k, "b") == [], 20, what="b released")
    apply_lb(k, "e")
    wait_ingress(k, "e", ["192.168.1.241"])
    k("patch", "svc", "b", "-p", '{"spec": {"type": "LoadBalancer"}}')
    wait_for(lambda: any(r == "AllocationFailed" for _, r, _ in events(k, "b")), 20,
             what="b pending again")
    k("delete", "svc", "e")
    wait_ingress(k, "b", ["192.168.1.241"])

    # restart: the allocation is the Services' status; nothing moves, nothing is given twice
    before = {n: ingress(k, n) for n in ("b", "c", "d")}
    server.stop()
    server2 = start_server(server.data_dir, port=server.port, extra=["--lb-pool", POOL])
    try:
        apply_lb(k, "f")
        wait_for(lambda: any(r == "AllocationFailed" for _, r, _ in events(k, "f")), 20,
                 what="f pending after restart")
        assert {n: ingress(k, n) for n in ("b", "c", "d")} == before
        assert ingress(k, "f") == []
    finally:
        server2.stop()


def test_requested_addresses_and_sharing(lb):
    _, k = lb
    apply_lb(k, "x", loadBalancerIP="192.168.1.242")
    wait_ingress(k, "x", ["192.168.1.242"])
    apply_lb(k, "outside", annotations={"svcnet.io/loadBalancerIPs": "192.168.1.9"})
    wait_for(lambda: any("192.168.1.9 is not in any --lb-pool range" in m
                         for _, _, m in events(k, "outside")), 20, what="outside refused")
    apply_lb(k, "taken", loadBalancerIP="192.168.1.242")
    wait_for(lambda: any("does not allow sharing" in m for _, _, m in events(k, "taken")), 20,
             what="taken refused")

    share = {"svcnet.io/allow-shared-ip": "web"}
    apply_lb(k, "s1", port=80, annotations=share)
    wait_ingress(k, "s1", ["192.168.1.240"])
    apply_lb(k, "s2", port=443, annotations=share)
    wait_ingress(k, "s2", ["192.168.1.240"])
    apply_lb(k, "s3", port=443, annotations=share)  # clashes with s2: the next free one
    wait_ingress(k, "s3", ["192.168.1.241"])

    # another class is left alone
    apply_lb(k, "foreign", loadBalancerClass="example.com/other")
    k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Service",
                                            "metadata": {"name": "probe", "namespace": "default"},
                                            "spec": {"type": "LoadBalancer",
                                                     "ports": [{"port": 9}]}}))
    wait_for(lambda: any(r == "AllocationFailed" for _, r, _ in events(k, "probe")), 20,
             what="probe pending (pool full)")
    assert ingress(k, "foreign") == [] and events(k, "foreign") == []


def test_servicelb_class_gets_the_ready_nodes_addresses(lb):
    server, k = lb
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}
    k("apply", "-f", "-", input=json.dumps(node))
    apply_lb(k, "nlb", loadBalancerClass="svcnet.io/node-lb")
    wait_ingress(k, "nlb", ["192.168.1.2"])
    apply_lb(k, "nlb2", loadBalancerClass="svcnet.io/node-lb")  # port 80 again
    wait_for(lambda: any("port TCP/80 is already in use on the nodes" in m
                         for _, _, m in events(k, "nlb2")), 20, what="nlb2 refused")
    k("delete", "svc", "nlb")
    wait_ingress(k, "nlb2", ["192.168.1.2"])


def _controller_manager_pid(server) -> int:
    """The server's own controller-manager child (found by parent PID, never by name alone)."""
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f", "controller-manager"],
                         capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def test_a_burst_and_a_killed_controller_never_give_an_address_twice(lb):
    server, k = lb
    docs = [{"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": f"burst-{i}", "namespace": "default"},
             "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}} for i in range(6)]
    first = wait_for(lambda: _controller_manager_pid(server), 20, what="the controller manager")
    k("apply", "-f", "-", input="\n".join(json.dumps(d) for d in docs))
    os.kill(first, signal.SIGKILL)  # halfway through, or before it started: either must hold
    wait_for(lambda: _controller_manager_pid(server) not in (0, first), 30,
             what="the controller manager to be restarted")

    def settled():
        held = [ingress(k, f"burst-{i}") for i in range(6)]
        return held if sum(1 for h in held if h) == 3 else None

    held = wait_for(settled, 30, what="three of six to get the three addresses")
    assert sorted(ip for h in held for ip in h) == ["192.168.1.240", "192.168.1.241", "192.168.1.242"]
    pending = [f"burst-{i}" for i, h in enumerate(held) if not h]
    wait_for(lambda: all(any(r == "AllocationFailed" for _, r, _ in events(k, n)) for n in pending),
             20, what="the others to be pending with an Event")
