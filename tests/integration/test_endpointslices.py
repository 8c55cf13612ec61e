"""The EndpointSlice and Endpoints controllers against a real `svcnet server`.

There is no kubelet: pods are created through the API (bound to Nodes created through the API)
and their status is written through `pods/NAME/status` as kwok would write it.

The controllers run inside the server process, as part of its controllers.
"""

from __future__ import annotations

import urllib.parse

import pytest

from .conftest import wait_for

SLICES = "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SERVICE_NAME = "kubernetes.io/service-name"
CONTROLLER = "endpointslice-controller.k8s.io"


# ---------------------------------------------------------------------------------------------
# API helpers
# ---------------------------------------------------------------------------------------------

def api(server, method: str, path: str, body=None, ok=(200, 201), ctype="application/json"):
    status, _, obj = server.request(method, path, body, headers={"Content-Type": ctype})
    if status not in ok:
        raise AssertionError(f"{method} {path}: {status} {obj}")
    return obj


def create_node(server, name: str, zone: str | None = "zone-a") -> dict:
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    return api(server, "POST", "/api/v1/nodes",
               {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})


def create_service(server, ns: str, name: str, selector: dict | None = None, ports=None,
                   labels: dict | None = None, **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}], **spec}}
    if selector is not None:
        body["spec"]["selector"] = selector
    return api(server, "POST", f"/api/v1/namespaces/{ns}/services", body)


def create_pod(server, ns: str, name: str, labels: dict, node: str, ports=None) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.10",
                "ports": ports or [{"name": "http", "containerPort": 8080}]}]}}
    return api(server, "POST", f"/api/v1/namespaces/{ns}/pods", body)


def set_pod_status(server, ns: str, name: str, ip: str, ready: bool, when: str) -> dict:
    """What kwok (or a kubelet) writes once the pod runs."""
    st = "True" if ready else "False"
    conds = [{"type": t, "status": s, "lastTransitionTime": when}
             for t, s in (("PodReadyToStartContainers", "True"), ("Initialized", "True"),
                          ("Ready", st), ("ContainersReady", st), ("PodScheduled", "True"))]
    body = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "hostIP": "192.168.0.10", "hostIPs": [{"ip": "192.168.0.10"}],
                       "startTime": when, "conditions": conds}}
    return api(server, "PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", body,
               ctype="application/merge-patch+json")


def managed_slices(server, ns: str, svc: str) -> list[dict]:
    q = urllib.parse.urlencode({"labelSelector": f"{SERVICE_NAME}={svc},{MANAGED_BY}={CONTROLLER}"})
    return api(server, "GET", SLICES.format(ns=ns) + "?" + q)["items"]


def get_endpoints(server, ns: str, name: str) -> dict | None:
    status, _, obj = server.request("GET", f"/api/v1/namespaces/{ns}/endpoints/{name}")
    return obj if status == 200 else None


def endpoint_states(slices: list[dict]) -> dict[str, tuple]:
    """pod name -> (address, ready, serving, terminating)."""
    out = {}
    for s in slices:
        for e in s.get("endpoints") or []:
            c = e.get("conditions") or {}
            out[e["targetRef"]["name"]] = (e["addresses"][0], c.get("ready"), c.get("serving"),
                                           c.get("terminating"))
    return out


def ep_addresses(ep: dict | None) -> tuple[list[str], list[str]]:
    ready, not_ready = [], []
    for ss in (ep or {}).get("subsets") or []:
        ready += [a["ip"] for a in ss.get("addresses") or []]
        not_ready += [a["ip"] for a in ss.get("notReadyAddresses") or []]
    return sorted(ready), sorted(not_ready)


def has_slices(server, ns, svc, states: dict, nslices: int | None = None):
    slices = managed_slices(server, ns, svc)
    if endpoint_states(slices) != states or (nslices is not None and len(slices) != nslices):
        return None
    return slices


# ---------------------------------------------------------------------------------------------
# controllers: in the server, or here
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def controllers(server):
    """The controllers run inside the server process (svcnet/controlplane.py)."""
    yield "server"


@pytest.fixture
def node(server, namespace):
    name = f"{namespace}-node"
    create_node(server, name)
    yield name
    server.request("DELETE", f"/api/v1/nodes/{name}")


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

def test_slices_and_endpoints_follow_pods(server, kubectl, controllers, namespace, node):
    ns = namespace
    svc = create_service(server, ns, "web", {"app": "web"}, labels={"team": "blue"})

    # no pods yet: one placeholder slice, no ports, no endpoints
    [ph] = wait_for(lambda: managed_slices(server, ns, "web"), what="placeholder slice")
    assert not ph.get("endpoints") and not ph.get("ports") and ph["addressType"] == "IPv4"

    pods = {n: create_pod(server, ns, n, {"app": a}, node)
            for n, a in (("p1", "web"), ("p2", "web"), ("p3", "web"), ("other", "db"))}
    set_pod_status(server, ns, "p1", "10.244.1.1", True, "2026-01-01T00:00:01Z")
    set_pod_status(server, ns, "p2", "10.244.1.2", True, "2026-01-01T00:00:02Z")
    set_pod_status(server, ns, "p3", "10.244.1.3", False, "2026-01-01T00:00:03Z")
    set_pod_status(server, ns, "other", "10.244.1.4", True, "2026-01-01T00:00:04Z")

    want = {"p1": ("10.244.1.1", True, True, False), "p2": ("10.244.1.2", True, True, False),
            "p3": ("10.244.1.3", False, False, False)}
    [s] = wait_for(lambda: has_slices(server, ns, "web", want, 1), what="three endpoints")
    # the placeholder was reused for the endpoints
    assert s["metadata"]["name"] == ph["metadata"]["name"]
    m = s["metadata"]
    assert m["generateName"] == "web-"
    assert m["labels"] == {"team": "blue", SERVICE_NAME: "web", MANAGED_BY: CONTROLLER}
    assert m["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                     "uid": svc["metadata"]["uid"], "controller": True,
                                     "blockOwnerDeletion": True}]
    assert m["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    e1 = next(e for e in s["endpoints"] if e["targetRef"]["name"] == "p1")
    assert e1["nodeName"] == node and e1["zone"] == "zone-a"
    assert e1["targetRef"] == {"kind": "Pod", "namespace": ns, "name": "p1",
                               "uid": pods["p1"]["metadata"]["uid"]}

    ep = wait_for(lambda: (e := get_endpoints(server, ns, "web")) and
                  ep_addresses(e) == (["10.244.1.1", "10.244.1.2"], ["10.244.1.3"]) and e,
                  what="Endpoints addresses / notReadyAddresses")
    assert ep["metadata"]["labels"] == {"team": "blue"}
    [ss] = ep["subsets"]
    assert ss["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    a1 = next(a for a in ss["addresses"] if a["ip"] == "10.244.1.1")
    assert a1["nodeName"] == node and a1["targetRef"]["uid"] == pods["p1"]["metadata"]["uid"]

    # readiness flips
    set_pod_status(server, ns, "p3", "10.244.1.3", True, "2026-01-01T00:01:00Z")
    want["p3"] = ("10.244.1.3", True, True, False)
    [s] = wait_for(lambda: has_slices(server, ns, "web", want, 1), what="p3 ready")
    assert s["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == \
        "2026-01-01T00:01:00Z"
    wait_for(lambda: ep_addresses(get_endpoints(server, ns, "web")) ==
             (["10.244.1.1", "10.244.1.2", "10.244.1.3"], []), what="p3 in addresses")

    # a label change takes a pod out
    api(server, "PATCH", f"/api/v1/namespaces/{ns}/pods/p2", {"metadata": {"labels": {"app": "db"}}},
        ctype="application/merge-patch+json")
    del want["p2"]
    wait_for(lambda: has_slices(server, ns, "web", want, 1), what="p2 leaves")
    wait_for(lambda: ep_addresses(get_endpoints(server, ns, "web")) ==
             (["10.244.1.1", "10.244.1.3"], []), what="p2 leaves Endpoints")

    # graceful deletion: the endpoint stays, terminating (serving, not ready); Endpoints drops it
    api(server, "DELETE", f"/api/v1/namespaces/{ns}/pods/p1")
    want["p1"] = ("10.244.1.1", False, True, True)
    wait_for(lambda: has_slices(server, ns, "web", want, 1), what="p1 terminating")
    wait_for(lambda: ep_addresses(get_endpoints(server, ns, "web")) == (["10.244.1.3"], []),
             what="terminating p1 out of Endpoints")
    # and once it is gone, it is gone from the slice
    api(server, "DELETE", f"/api/v1/namespaces/{ns}/pods/p1?gracePeriodSeconds=0")
    del want["p1"]
    wait_for(lambda: has_slices(server, ns, "web", want, 1), what="p1 removed")

    # kubectl shows them, with the server's columns
    out = wait_for(lambda: (o := kubectl("get", "endpointslices", "-n", ns).stdout) and
                   "10.244.1.3" in o and o, what="kubectl get endpointslices")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert row.split()[:4] == [s["metadata"]["name"], "IPv4", "8080", "10.244.1.3"]
    out = kubectl("get", "endpoints", "web", "-n", ns).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "ENDPOINTS", "AGE"]
    assert row.split()[:2] == ["web", "10.244.1.3:8080"]


def test_named_target_port_splits_slices(server, controllers, namespace, node):
    ns = namespace
    create_service(server, ns, "api", {"app": "api"},
                   ports=[{"name": "http", "port": 80, "targetPort": "web"},
                          {"name": "admin", "port": 9000, "targetPort": 9000}])
    create_pod(server, ns, "a", {"app": "api"}, node, ports=[{"name": "web", "containerPort": 8080}])
    create_pod(server, ns, "b", {"app": "api"}, node, ports=[{"name": "web", "containerPort": 8081}])
    set_pod_status(server, ns, "a", "10.244.2.1", True, "2026-01-01T00:00:01Z")
    set_pod_status(server, ns, "b", "10.244.2.2", False, "2026-01-01T00:00:02Z")
    want = {"a": ("10.244.2.1", True, True, False), "b": ("10.244.2.2", False, False, False)}
    slices = wait_for(lambda: has_slices(server, ns, "api", want, 2), what="two slices")
    by_pod = {s["endpoints"][0]["targetRef"]["name"]: s for s in slices}
    assert by_pod["a"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"},
                                    {"name": "admin", "port": 9000, "protocol": "TCP"}]
    assert by_pod["b"]["ports"] == [{"name": "http", "port": 8081, "protocol": "TCP"},
                                    {"name": "admin", "port": 9000, "protocol": "TCP"}]

    def subsets():
        ep = get_endpoints(server, ns, "api") or {}
        return sorted((tuple(sorted((p["name"], p["port"]) for p in ss.get("ports") or [])),
                       tuple(a["ip"] for a in ss.get("addresses") or []),
                       tuple(a["ip"] for a in ss.get("notReadyAddresses") or []))
                      for ss in ep.get("subsets") or [])

    want_subsets = [((("admin", 9000),), ("10.244.2.1",), ("10.244.2.2",)),
                    ((("http", 8080),), ("10.244.2.1",), ()),
                    ((("http", 8081),), (), ("10.244.2.2",))]
    wait_for(lambda: subsets() == want_subsets, what="Endpoints subsets by port set")


def test_publish_not_ready_addresses(server, controllers, namespace, node):
    ns = namespace
    create_service(server, ns, "peers", {"app": "peers"}, clusterIP="None",
                   publishNotReadyAddresses=True)
    create_pod(server, ns, "x", {"app": "peers"}, node)
    set_pod_status(server, ns, "x", "10.244.3.1", False, "2026-01-01T00:00:01Z")
    [s] = wait_for(lambda: has_slices(server, ns, "peers",
                                      {"x": ("10.244.3.1", True, False, False)}, 1),
                   what="not-ready pod published")
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    ep = wait_for(lambda: (e := get_endpoints(server, ns, "peers")) and
                  ep_addresses(e) == (["10.244.3.1"], []) and e, what="Endpoints address")
    assert ep["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}


def test_service_deletion_removes_slices_and_endpoints(server, controllers, namespace, node):
    ns = namespace
    create_service(server, ns, "gone", {"app": "gone"})
    create_pod(server, ns, "g", {"app": "gone"}, node)
    set_pod_status(server, ns, "g", "10.244.4.1", True, "2026-01-01T00:00:01Z")
    wait_for(lambda: has_slices(server, ns, "gone", {"g": ("10.244.4.1", True, True, False)}, 1),
             what="slice")
    wait_for(lambda: get_endpoints(server, ns, "gone"), what="Endpoints")
    api(server, "DELETE", f"/api/v1/namespaces/{ns}/services/gone")
    wait_for(lambda: managed_slices(server, ns, "gone") == [], what="slices deleted")
    wait_for(lambda: get_endpoints(server, ns, "gone") is None, what="Endpoints deleted")


def test_selectorless_service_keeps_user_slice(server, controllers, namespace, node):
    ns = namespace
    create_service(server, ns, "manual", None)
    user_slice = api(server, "POST", SLICES.format(ns=ns), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "manual-1", "labels": {SERVICE_NAME: "manual",
                                                     MANAGED_BY: "someone-else"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.9.9.9"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    user_ep = api(server, "POST", f"/api/v1/namespaces/{ns}/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "10.9.9.9"}], "ports": [{"name": "http", "port": 8080}]}]})
    # a later change to the selector-less Service, then a marker Service synced after it
    api(server, "PATCH", f"/api/v1/namespaces/{ns}/services/manual",
        {"metadata": {"labels": {"touched": "yes"}}}, ctype="application/merge-patch+json")
    create_service(server, ns, "marker", {"app": "marker"})
    wait_for(lambda: managed_slices(server, ns, "marker"), what="marker slice")
    wait_for(lambda: get_endpoints(server, ns, "marker"), what="marker Endpoints")

    assert managed_slices(server, ns, "manual") == []
    got = api(server, "GET", SLICES.format(ns=ns) + "/manual-1")
    assert got["metadata"]["resourceVersion"] == user_slice["metadata"]["resourceVersion"]
    assert got["endpoints"][0]["addresses"] == ["10.9.9.9"]
    ep = get_endpoints(server, ns, "manual")
    assert ep["metadata"]["resourceVersion"] == user_ep["metadata"]["resourceVersion"]
