"""Server-side printing: columns, cells and Table envelopes against printers.go (release-1.32)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from svcnet.api import tables
from svcnet.api.errors import APIError

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def ago(**kw) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(kind: str, obj: dict) -> list:
    return tables.table(kind, [obj], NOW)["rows"][0]["cells"]


def meta(name: str = "x", age: dict | None = None, **extra) -> dict:
    m = {"name": name, "namespace": "default", "creationTimestamp": ago(**(age or {"minutes": 5}))}
    m.update(extra)
    return m


# --- durations ---------------------------------------------------------------------------------

H = 3600
D = 24 * H


@pytest.mark.parametrize("seconds,human,short", [
    (-5, "<invalid>", "<invalid>"),
    (-2, "<invalid>", "<invalid>"),
    (-1.5, "0s", "0s"),          # up to 2s of clock skew is "now"
    (-0.5, "0s", "0s"),
    (0, "0s", "0s"),
    (0.9, "0s", "0s"),
    (1, "1s", "1s"),
    (59, "59s", "59s"),
    (60, "60s", "1m"),
    (70, "70s", "1m"),
    (119, "119s", "1m"),
    (120, "2m", "2m"),
    (123, "2m3s", "2m"),
    (190, "3m10s", "3m"),
    (599, "9m59s", "9m"),
    (600, "10m", "10m"),
    (601, "10m", "10m"),
    (70 * 60, "70m", "1h"),
    (3 * H - 1, "179m", "2h"),
    (3 * H, "3h", "3h"),
    (3 * H + 60, "3h1m", "3h"),
    (5 * H + 2 * 60 + 30, "5h2m", "5h"),
    (8 * H - 1, "7h59m", "7h"),
    (8 * H, "8h", "8h"),
    (24 * H, "24h", "1d"),
    (47 * H, "47h", "1d"),
    (48 * H, "2d", "2d"),
    (49 * H, "2d1h", "2d"),
    (8 * D - 1, "7d23h", "7d"),
    (8 * D + 2 * H, "8d", "8d"),
    (364 * D, "364d", "364d"),
    (367 * D, "367d", "1y"),
    (730 * D - 1, "729d", "1y"),
    (730 * D, "2y", "2y"),
    (730 * D + 25 * H, "2y1d", "2y"),
    (8 * 365 * D - 1, "7y364d", "7y"),
    (8 * 365 * D + 2 * H, "8y", "8y"),
    (20 * 365 * D, "20y", "20y"),
])
def test_durations(seconds, human, short):
    d = timedelta(seconds=seconds)
    assert tables.human_duration(d) == human
    assert tables.short_human_duration(d) == short


def test_age_unknown_without_creation_timestamp():
    assert cells("Namespace", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}}) == \
        ["ns", "Active", "<unknown>"]


def test_age_accepts_microtime_and_offsets():
    assert tables._since("2024-06-01T11:59:00.123456Z", NOW) == "59s"
    assert tables._since("2024-06-01T13:00:00+02:00", NOW) == "60m"


# --- column definitions ------------------------------------------------------------------------

COLUMNS = {
    "Pod": [("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
            ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1),
            ("Nominated Node", "string", 1), ("Readiness Gates", "string", 1)],
    "Service": [("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
                ("Selector", "string", 1)],
    "Endpoints": [("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
    "EndpointSlice": [("Name", "string", 0), ("AddressType", "string", 0), ("Ports", "string", 0),
                      ("Endpoints", "string", 0), ("Age", "string", 0)],
    "Node": [("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0),
             ("Version", "string", 0), ("Internal-IP", "string", 1), ("External-IP", "string", 1),
             ("OS-Image", "string", 1), ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)],
    "Namespace": [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
    "Event": [("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
              ("Object", "string", 0), ("Subobject", "string", 1), ("Source", "string", 1),
              ("Message", "string", 0), ("First Seen", "string", 1), ("Count", "string", 1),
              ("Name", "string", 1)],
    "ConfigMap": [("Name", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
    "Deployment": [("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "string", 0),
                   ("Available", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
                   ("Images", "string", 1), ("Selector", "string", 1)],
    "ReplicaSet": [("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                   ("Ready", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
                   ("Images", "string", 1), ("Selector", "string", 1)],
    "Lease": [("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
    "Widget": [("Name", "string", 0), ("Created At", "date", 0)],  # no printer: the default table
}


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_column_definitions(kind):
    defs = tables.table(kind, [], NOW)["columnDefinitions"]
    assert [(c["name"], c["type"], c["priority"]) for c in defs] == COLUMNS[kind]
    for c in defs:
        assert set(c) == {"name", "type", "format", "description", "priority"}
        assert c["format"] == ("name" if c["name"] == "Name" else "")
        assert c["description"]


def test_every_served_kind_has_a_printer():
    from svcnet.api.resources import RESOURCES
    assert {r.kind for r in RESOURCES} <= set(tables.PRINTERS)


def test_name_and_age_descriptions_are_objectmeta_swagger_docs():
    defs = {c["name"]: c for c in tables.table("Service", [], NOW)["columnDefinitions"]}
    assert defs["Name"]["description"].startswith("Name must be unique within a namespace.")
    assert defs["Age"]["description"].startswith("CreationTimestamp is a timestamp representing")
    assert "\n\nPopulated by the system." in defs["Age"]["description"]


# --- Table envelope, includeObject, headers ----------------------------------------------------

SVC = {"kind": "Service", "apiVersion": "v1",
       "metadata": meta("web", labels={"app": "web"}, uid="u1", resourceVersion="7"),
       "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web"}}}


def test_table_envelope():
    t = tables.table("Service", [SVC], NOW, resource_version="106", continue_token="tok", remaining=3)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "106", "continue": "tok", "remainingItemCount": 3}
    assert len(t["rows"]) == 1


def test_table_metadata_omits_empty_fields():
    assert tables.table("Service", [], NOW)["metadata"] == {}
    assert tables.table("Service", [], NOW, remaining=0)["metadata"] == {"remainingItemCount": 0}


def test_include_object_metadata_is_default():
    row = tables.table("Service", [SVC], NOW)["rows"][0]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": SVC["metadata"]}
    assert tables.table("Service", [SVC], NOW, include_object="")["rows"][0]["object"] == row["object"]


def test_include_object_none_and_object():
    assert "object" not in tables.table("Service", [SVC], NOW, include_object="None")["rows"][0]
    assert tables.table("Service", [SVC], NOW, include_object="Object")["rows"][0]["object"] == SVC
    bare = {k: v for k, v in SVC.items() if k not in ("kind", "apiVersion")}
    full = tables.table("Service", [bare], NOW, include_object="Object")["rows"][0]["object"]
    assert full["kind"] == "Service" and full["apiVersion"] == "v1" and full["spec"] == SVC["spec"]
    rs = {"metadata": meta("rs"), "spec": {"replicas": 1}}
    obj = tables.table("ReplicaSet", [rs], NOW, include_object="Object")["rows"][0]["object"]
    assert (obj["kind"], obj["apiVersion"]) == ("ReplicaSet", "apps/v1")


def test_include_object_unknown_value_is_bad_request():
    with pytest.raises(APIError) as e:
        tables.table("Service", [SVC], NOW, include_object="Bogus")
    assert (e.value.code, e.value.reason) == (400, "BadRequest")
    assert e.value.message == 'unrecognized includeObject value: "Bogus"'


def test_no_headers_mode():
    t = tables.table("Service", [SVC], NOW, include_headers=False)
    assert t["columnDefinitions"] == []
    assert t["rows"][0]["cells"][0] == "web"


# --- Service -----------------------------------------------------------------------------------

def svc(spec: dict, status: dict | None = None) -> dict:
    return {"metadata": meta("s"), "spec": spec, "status": status or {}}


@pytest.mark.parametrize("obj,expected", [
    (svc({"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
          "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
          "selector": {"tier": "fe", "app": "web"}}),
     ["s", "ClusterIP", "10.96.0.1", "<none>", "80/TCP,53/UDP", "5m", "app=web,tier=fe"]),
    (svc({"type": "NodePort", "clusterIPs": ["10.96.0.2"],
          "ports": [{"port": 80, "nodePort": 30008, "protocol": "TCP"}]}),
     ["s", "NodePort", "10.96.0.2", "<none>", "80:30008/TCP", "5m", "<none>"]),
    (svc({"type": "NodePort", "clusterIPs": ["10.96.0.2"], "externalIPs": ["1.2.3.4", "5.6.7.8"],
          "ports": [{"port": 80, "nodePort": 30008, "protocol": "TCP"}]}),
     ["s", "NodePort", "10.96.0.2", "1.2.3.4,5.6.7.8", "80:30008/TCP", "5m", "<none>"]),
    (svc({"type": "LoadBalancer", "clusterIPs": ["10.96.0.3"],
          "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
     ["s", "LoadBalancer", "10.96.0.3", "<pending>", "443:31443/TCP", "5m", "<none>"]),
    (svc({"type": "LoadBalancer", "clusterIPs": ["10.96.0.3"],
          "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]},
         {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"},
                                       {"ip": "203.0.113.2"}, {"ip": "203.0.113.9"}]}}),
     ["s", "LoadBalancer", "10.96.0.3", "203.0.113.2,203.0.113.9,lb.example.com", "443:31443/TCP",
      "5m", "<none>"]),
    (svc({"type": "LoadBalancer", "clusterIPs": ["10.96.0.3"], "externalIPs": ["1.1.1.1"],
          "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]},
         {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}),
     ["s", "LoadBalancer", "10.96.0.3", "203.0.113.9,1.1.1.1", "443:31443/TCP", "5m", "<none>"]),
    (svc({"type": "LoadBalancer", "clusterIPs": ["10.96.0.3"], "externalIPs": ["1.1.1.1"], "ports": []}),
     ["s", "LoadBalancer", "10.96.0.3", "1.1.1.1", "<none>", "5m", "<none>"]),
    (svc({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
          "ports": [{"port": 5432, "protocol": "TCP"}], "selector": {"app": "db"}}),
     ["s", "ClusterIP", "None", "<none>", "5432/TCP", "5m", "app=db"]),
    (svc({"type": "ExternalName", "externalName": "db.example.com"}),
     ["s", "ExternalName", "<none>", "db.example.com", "<none>", "5m", "<none>"]),
    (svc({"clusterIP": "10.96.0.4", "ports": [{"port": 8080}]}),  # undefaulted type and protocol
     ["s", "ClusterIP", "10.96.0.4", "<none>", "8080/TCP", "5m", "<none>"]),
    (svc({"type": "ClusterIP", "clusterIPs": ["fd00::10", "10.96.0.5"], "ports": [{"port": 80, "protocol": "SCTP"}]}),
     ["s", "ClusterIP", "fd00::10", "<none>", "80/SCTP", "5m", "<none>"]),
])
def test_service_cells(obj, expected):
    assert cells("Service", obj) == expected


# --- Pod ---------------------------------------------------------------------------------------

def pod(containers=1, statuses=None, init=None, init_statuses=None, phase="Running", conditions=None,
        deletion=None, reason=None, spec_extra=None, status_extra=None) -> dict:
    spec = {"containers": [{"name": f"c{i}", "image": "img"} for i in range(containers)],
            "nodeName": "node-1", **(spec_extra or {})}
    if init is not None:
        spec["initContainers"] = init
    status = {"phase": phase, "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
              **(status_extra or {})}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if conditions is not None:
        status["conditions"] = conditions
    if reason is not None:
        status["reason"] = reason
    m = meta("p", age={"hours": 1})
    if deletion:
        m["deletionTimestamp"] = deletion
    return {"metadata": m, "spec": spec, "status": status}


def running(name="c0", ready=True, restarts=0, last=None):
    s = {"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": ago(hours=1)}}}
    if last:
        s["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last}}
    return s


def waiting(reason, name="c0", restarts=0, last=None):
    s = {"name": name, "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason}}}
    if last:
        s["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last}}
    return s


def terminated(name="c0", exit_code=0, reason=None, signal=None, restarts=0):
    t = {"exitCode": exit_code}
    if reason:
        t["reason"] = reason
    if signal:
        t["signal"] = signal
    return {"name": name, "ready": False, "restartCount": restarts, "state": {"terminated": t}}


READY = [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]


@pytest.mark.parametrize("obj,ready,status,restarts", [
    (pod(statuses=[running()], conditions=READY), "1/1", "Running", "0"),
    (pod(containers=2, statuses=[running("c0"), running("c1", ready=False)]), "1/2", "Running", "0"),
    (pod(phase="Pending"), "0/1", "Pending", "0"),
    (pod(phase="Pending", statuses=[waiting("ContainerCreating")]), "0/1", "ContainerCreating", "0"),
    (pod(statuses=[waiting("CrashLoopBackOff", restarts=5, last=ago(minutes=2))]),
     "0/1", "CrashLoopBackOff", "5 (2m ago)"),
    (pod(statuses=[waiting("ImagePullBackOff")]), "0/1", "ImagePullBackOff", "0"),
    (pod(statuses=[running(restarts=3)]), "1/1", "Running", "3"),  # no lastState: no "(ago)"
    (pod(containers=2, statuses=[running("c0", restarts=1, last=ago(minutes=30)),
                                 running("c1", restarts=2, last=ago(seconds=90))]),
     "2/2", "Running", "3 (90s ago)"),
    (pod(phase="Succeeded", statuses=[terminated(reason="Completed")]), "0/1", "Completed", "0"),
    (pod(phase="Failed", statuses=[terminated(exit_code=1, reason="Error")]), "0/1", "Error", "0"),
    (pod(phase="Failed", statuses=[terminated(exit_code=3)]), "0/1", "ExitCode:3", "0"),
    (pod(phase="Failed", statuses=[terminated(exit_code=137, signal=9)]), "0/1", "Signal:9", "0"),
    (pod(phase="Failed", reason="Evicted", statuses=[terminated(exit_code=137, signal=9)]),
     "0/1", "Signal:9", "0"),
    (pod(phase="Failed", reason="Evicted", statuses=[]), "0/1", "Evicted", "0"),
    (pod(statuses=[running()], deletion=ago(seconds=5)), "1/1", "Terminating", "0"),
    (pod(statuses=[running()], deletion=ago(seconds=5), reason="NodeLost"), "1/1", "Unknown", "0"),
    (pod(phase="Succeeded", statuses=[terminated(reason="Completed")], deletion=ago(seconds=5)),
     "0/1", "Completed", "0"),
    # A completed container next to a running one: Running/NotReady by the Ready condition.
    (pod(containers=2, statuses=[terminated("c0", reason="Completed"), running("c1")], conditions=READY),
     "1/2", "Running", "0"),
    (pod(containers=2, statuses=[terminated("c0", reason="Completed"), running("c1")],
         conditions=[{"type": "Ready", "status": "False"}]), "1/2", "NotReady", "0"),
    (pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                       "reason": "SchedulingGated"}]), "0/1", "SchedulingGated", "0"),
    # init containers
    (pod(phase="Pending", init=[{"name": "i0"}, {"name": "i1"}],
         init_statuses=[waiting("PodInitializing", "i0"), waiting("PodInitializing", "i1")],
         statuses=[waiting("PodInitializing")]), "0/1", "Init:0/2", "0"),
    (pod(phase="Pending", init=[{"name": "i0"}, {"name": "i1"}],
         init_statuses=[terminated("i0", reason="Completed"), running("i1", ready=False)],
         statuses=[waiting("PodInitializing")]), "0/1", "Init:1/2", "0"),
    (pod(phase="Pending", init=[{"name": "i0"}],
         init_statuses=[waiting("CrashLoopBackOff", "i0", restarts=4, last=ago(minutes=1))],
         statuses=[waiting("PodInitializing")]), "0/1", "Init:CrashLoopBackOff", "4 (60s ago)"),
    (pod(phase="Pending", init=[{"name": "i0"}], init_statuses=[terminated("i0", 1, "Error")],
         statuses=[waiting("PodInitializing")]), "0/1", "Init:Error", "0"),
    (pod(phase="Pending", init=[{"name": "i0"}], init_statuses=[terminated("i0", 2)]),
     "0/1", "Init:ExitCode:2", "0"),
    (pod(phase="Pending", init=[{"name": "i0"}], init_statuses=[terminated("i0", 137, signal=9)]),
     "0/1", "Init:Signal:9", "0"),
    (pod(phase="Pending", init=[{"name": "i0"}], init_statuses=[terminated("i0", 1, "Error")],
         statuses=[waiting("PodInitializing")], deletion=ago(seconds=1)), "0/1", "Terminating", "0"),
    # a sidecar (restartable init container) counts as a container once started
    (pod(init=[{"name": "side", "restartPolicy": "Always"}],
         init_statuses=[dict(running("side", restarts=1, last=ago(minutes=7)), started=True)],
         statuses=[running()], conditions=READY), "2/2", "Running", "1 (7m ago)"),
    (pod(phase="Pending", init=[{"name": "i0"}],  # only sidecars are skipped once started
         init_statuses=[dict(running("i0"), started=True)],
         statuses=[waiting("PodInitializing")]), "0/1", "Init:0/1", "0"),
    (pod(phase="Pending", init=[{"name": "side", "restartPolicy": "Always"}],
         init_statuses=[dict(running("side", ready=False), started=False)],
         statuses=[waiting("PodInitializing")]), "0/2", "Init:0/1", "0"),
])
def test_pod_status(obj, ready, status, restarts):
    c = cells("Pod", obj)
    assert (c[1], c[2], c[3]) == (ready, status, restarts)


def test_pod_wide_cells():
    p = pod(statuses=[running()], spec_extra={"readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
            conditions=[{"type": "a", "status": "True"}, {"type": "b", "status": "False"}],
            status_extra={"nominatedNodeName": "node-2"})
    assert cells("Pod", p) == ["p", "1/1", "Running", "0", "60m", "10.244.0.7", "node-1", "node-2", "1/2"]
    bare = {"metadata": meta("q"), "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}}
    assert cells("Pod", bare) == ["q", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]
    only_ips = {"metadata": meta("r"), "spec": {"containers": []},
                "status": {"phase": "Running", "podIPs": [{"ip": "fd00::7"}, {"ip": "10.1.1.1"}]}}
    assert cells("Pod", only_ips)[5] == "fd00::7"


@pytest.mark.parametrize("phase,conditions", [
    ("Succeeded", [{"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."}]),
    ("Failed", [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
])
def test_pod_row_conditions(phase, conditions):
    row = tables.table("Pod", [pod(phase=phase, statuses=[])], NOW)["rows"][0]
    assert row["conditions"] == conditions


def test_running_pod_row_has_no_conditions():
    assert "conditions" not in tables.table("Pod", [pod(statuses=[running()])], NOW)["rows"][0]


# --- Node --------------------------------------------------------------------------------------

def node(conditions=None, unschedulable=False, labels=None, addresses=None, info=None) -> dict:
    return {"metadata": {"name": "n1", "creationTimestamp": ago(days=3, hours=4), "labels": labels or {}},
            "spec": {"unschedulable": unschedulable} if unschedulable else {},
            "status": {"conditions": conditions or [], "addresses": addresses or [], "nodeInfo": info or {}}}


@pytest.mark.parametrize("obj,status,roles", [
    (node([{"type": "Ready", "status": "True"}]), "Ready", "<none>"),
    (node([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}]),
     "NotReady", "<none>"),
    (node([{"type": "Ready", "status": "Unknown"}]), "NotReady", "<none>"),
    (node([{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]),
     "NotReady", "<none>"),  # the last Ready condition wins
    (node([]), "Unknown", "<none>"),
    (node([{"type": "Ready", "status": "True"}], unschedulable=True), "Ready,SchedulingDisabled", "<none>"),
    (node([], unschedulable=True), "Unknown,SchedulingDisabled", "<none>"),
    (node([{"type": "Ready", "status": "True"}],
          labels={"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "x",
                  "kubernetes.io/role": "worker", "node-role.kubernetes.io/etcd": "true"}),
     "Ready", "control-plane,etcd,worker"),
    (node([{"type": "Ready", "status": "True"}], labels={"kubernetes.io/role": ""}), "Ready", "<none>"),
])
def test_node_status_and_roles(obj, status, roles):
    c = cells("Node", obj)
    assert (c[1], c[2]) == (status, roles)


def test_node_wide_cells():
    n = node([{"type": "Ready", "status": "True"}],
             addresses=[{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.10"},
                        {"type": "InternalIP", "address": "192.168.1.11"}],
             info={"kubeletVersion": "v1.32.4", "osImage": "Debian GNU/Linux 12 (bookworm)",
                   "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"})
    assert cells("Node", n) == ["n1", "Ready", "<none>", "3d4h", "v1.32.4", "192.168.1.10", "<none>",
                                "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "containerd://1.7.13"]
    assert cells("Node", node())[4:] == ["", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]


# --- Endpoints and EndpointSlice ----------------------------------------------------------------

def addrs(*ips):
    return [{"ip": ip} for ip in ips]


@pytest.mark.parametrize("subsets,expected", [
    (None, "<none>"),
    ([], "<none>"),
    ([{"addresses": addrs("10.244.0.2", "10.244.0.3"), "ports": [{"port": 80}]}], "10.244.0.2:80,10.244.0.3:80"),
    ([{"addresses": addrs("10.0.0.1", "10.0.0.2"), "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}]}],
     "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."),
    ([{"addresses": addrs("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"), "ports": [{"port": 8080}]}],
     "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 2 more..."),
    ([{"addresses": addrs("10.0.0.1", "10.0.0.2")}], "10.0.0.1,10.0.0.2"),  # headless, no ports
    ([{"addresses": addrs("fd00::1"), "ports": [{"port": 80}]}], "[fd00::1]:80"),
    ([{"notReadyAddresses": addrs("10.0.0.9"), "ports": [{"port": 80}]}], ""),
    ([{"addresses": addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")}, {"addresses": addrs("10.0.1.1"), "ports": [{"port": 1}]}],
     "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
])
def test_endpoints_cell(subsets, expected):
    ep = {"metadata": meta("web"), **({"subsets": subsets} if subsets is not None else {})}
    assert cells("Endpoints", ep) == ["web", expected, "5m"]


@pytest.mark.parametrize("ports,endpoints,ports_cell,endpoints_cell", [
    ([{"name": "http", "port": 80, "protocol": "TCP"}], [{"addresses": ["10.244.0.2"]}], "80", "10.244.0.2"),
    ([], [], "<unset>", "<unset>"),
    ([{"name": "http"}, {"port": 53}, {}], [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3"]}],
     "http,53,*", "10.0.0.1,10.0.0.2,10.0.0.3"),
    ([{"port": 1}, {"port": 2}, {"port": 3}, {"port": 4}, {"port": 5}],
     [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)],
     "1,2,3 + 2 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."),
    ([{"name": "", "port": None}, {"port": 80}], [{"addresses": []}], ",80", "<unset>"),
    ([{"name": ""}], [], "<unset>", "<unset>"),  # a lone empty name renders as "" -> <unset>
])
def test_endpoint_slice_cells(ports, endpoints, ports_cell, endpoints_cell):
    es = {"metadata": meta("web-abc"), "addressType": "IPv4", "ports": ports, "endpoints": endpoints}
    assert cells("EndpointSlice", es) == ["web-abc", "IPv4", ports_cell, endpoints_cell, "5m"]


# --- workloads ---------------------------------------------------------------------------------

TEMPLATE = {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                    {"name": "log", "image": "busybox"}]}}


@pytest.mark.parametrize("spec,status,expected", [
    ({"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
     {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
     ["d", "2/3", 3, 2, "5m", "web,log", "nginx:1.27,busybox", "app=web"]),
    ({"selector": {"matchLabels": {"tier": "fe", "app": "web"},
                   "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                        {"key": "canary", "operator": "DoesNotExist"}]},
      "template": {"spec": {"containers": []}}},
     {},
     ["d", "0/1", 0, 0, "5m", "", "", "app=web,!canary,env in (dev,prod),tier=fe"]),  # sorted by key
    ({"replicas": 0, "selector": {}, "template": TEMPLATE}, {},
     ["d", "0/0", 0, 0, "5m", "web,log", "nginx:1.27,busybox", ""]),
    ({"replicas": 1, "selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, "template": TEMPLATE},
     {}, ["d", "0/1", 0, 0, "5m", "web,log", "nginx:1.27,busybox", "<invalid>"]),
])
def test_deployment_cells(spec, status, expected):
    assert cells("Deployment", {"metadata": meta("d"), "spec": spec, "status": status}) == expected


@pytest.mark.parametrize("spec,status,expected", [
    ({"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}}, "template": TEMPLATE},
     {"replicas": 3, "readyReplicas": 1},
     ["rs", 3, 3, 1, "5m", "web,log", "nginx:1.27,busybox", "app=web,pod-template-hash=5d4f"]),
    ({"selector": {}, "template": TEMPLATE}, {}, ["rs", 1, 0, 0, "5m", "web,log", "nginx:1.27,busybox", "<none>"]),
    ({"replicas": 2, "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}, "template": TEMPLATE},
     {}, ["rs", 2, 0, 0, "5m", "web,log", "nginx:1.27,busybox", "<error>"]),
])
def test_replica_set_cells(spec, status, expected):
    assert cells("ReplicaSet", {"metadata": meta("rs"), "spec": spec, "status": status}) == expected


# --- events and small kinds --------------------------------------------------------------------

def event(**kw) -> dict:
    ev = {"metadata": meta("web.17a"), "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
          "type": "Normal", "reason": "Pulled", "message": "  Successfully pulled image \"nginx\"\n"}
    ev.update(kw)
    return ev


@pytest.mark.parametrize("obj,expected", [
    (event(firstTimestamp=ago(minutes=10), lastTimestamp=ago(minutes=2), count=4,
           source={"component": "kubelet", "host": "node-1"}),
     ["2m", "Normal", "Pulled", "pod/web-1", "", "kubelet, node-1", 'Successfully pulled image "nginx"',
      "10m", 4, "web.17a"]),
    (event(eventTime="2024-06-01T11:59:30.000000Z", reportingComponent="default-scheduler",
           reportingInstance="sched-1", type="Warning", reason="FailedScheduling"),
     ["30s", "Warning", "FailedScheduling", "pod/web-1", "", "default-scheduler, sched-1",
      'Successfully pulled image "nginx"', "30s", 1, "web.17a"]),
    (event(eventTime=ago(hours=1), series={"count": 7, "lastObservedTime": "2024-06-01T11:58:00.000000Z"},
           source={"component": "kubelet"}, involvedObject={"kind": "Node", "fieldPath": "spec"}),
     ["2m", "Normal", "Pulled", "node", "spec", "kubelet", 'Successfully pulled image "nginx"', "60m", 7, "web.17a"]),
    (event(), ["<unknown>", "Normal", "Pulled", "pod/web-1", "", "", 'Successfully pulled image "nginx"',
               "<unknown>", 1, "web.17a"]),
])
def test_event_cells(obj, expected):
    assert cells("Event", obj) == expected


@pytest.mark.parametrize("kind,obj,expected", [
    ("Namespace", {"metadata": meta("kube-system", age={"days": 400})}, ["kube-system", "", "400d"]),
    ("Namespace", {"metadata": meta("gone"), "status": {"phase": "Terminating"}}, ["gone", "Terminating", "5m"]),
    ("ConfigMap", {"metadata": meta("cm"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}, ["cm", 3, "5m"]),
    ("ConfigMap", {"metadata": meta("empty")}, ["empty", 0, "5m"]),
    ("Lease", {"metadata": meta("svcnet-controller"), "spec": {"holderIdentity": "host-1_abc"}},
     ["svcnet-controller", "host-1_abc", "5m"]),
    ("Lease", {"metadata": meta("free"), "spec": {}}, ["free", "", "5m"]),
    ("Widget", {"metadata": {"name": "w", "creationTimestamp": "2024-05-31T23:00:00-02:00"}},
     ["w", "2024-06-01T01:00:00Z"]),
    ("Widget", {"metadata": {"name": "w"}}, ["w", "0001-01-01T00:00:00Z"]),
])
def test_small_kind_cells(kind, obj, expected):
    assert cells(kind, obj) == expected


def test_rows_follow_input_order():
    objs = [{"metadata": meta(n)} for n in ("b", "a", "c")]
    assert [r["cells"][0] for r in tables.table("ConfigMap", objs, NOW)["rows"]] == ["b", "a", "c"]


def test_naive_now_is_utc():
    naive = NOW.replace(tzinfo=None)
    assert tables.table("ConfigMap", [{"metadata": meta("cm")}], naive)["rows"][0]["cells"][2] == "5m"
