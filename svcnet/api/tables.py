"""Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, as kube-apiserver builds them.

Theory of operation
-------------------
kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the cells it
gets back verbatim, so every column and cell here is a port of
kubernetes/pkg/printers/internalversion/printers.go (release-1.32) working on the v1 JSON dicts
the API serves:

* `PRINTERS` maps each served kind to its column definitions (name, type, format, description,
  priority) and a row function `(object, now) -> cells`. The apiserver always generates the
  wide form (`GenerateOptions{Wide: true}`), so every column is present and kubectl hides
  priority > 0 columns unless `-o wide`. A kind without a printer gets the apiserver's default
  table (Name, Created At).
* Ages are `duration.HumanDuration(now - timestamp)`, `<unknown>` for a missing timestamp;
  `human_duration` and `short_human_duration` port k8s.io/apimachinery/pkg/util/duration.
* Fields that the apiserver always defaults (Service type, port protocol, replicas) are read
  with those defaults, so an object that skipped defaulting still prints as Kubernetes would.
* `row.object` follows `includeObject`: "None" omits it, "Metadata" (the default) embeds a
  `PartialObjectMetadata`, "Object" the whole object. Pod rows carry the `Completed` row
  condition for Succeeded/Failed pods as the real printer does.
* Watch events after the first one are printed without headers: `include_headers=False`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from svcnet.api import errors, selectors
from svcnet.api.resources import BY_KIND

# ---------------------------------------------------------------------------------------------
# Durations (k8s.io/apimachinery/pkg/util/duration)
# ---------------------------------------------------------------------------------------------

_MIN, _HOUR, _DAY, _YEAR = 60, 3600, 86400, 365 * 86400


def _whole_seconds(d: timedelta) -> int:
    """int(d.Seconds()) in Go: truncated toward zero."""
    micros = d // timedelta(microseconds=1)
    return abs(micros) // 1_000_000 * (1 if micros >= 0 else -1)


def _pair(a: int, unit_a: str, b: int, unit_b: str) -> str:
    return f"{a}{unit_a}" if b == 0 else f"{a}{unit_a}{b}{unit_b}"


# (exclusive upper bound in seconds, format); HumanDuration's cascade for d >= 0s.
_HUMAN_STEPS: tuple[tuple[float, Callable[[int], str]], ...] = (
    (2 * _MIN, lambda s: f"{s}s"),
    (10 * _MIN, lambda s: _pair(s // _MIN, "m", s % _MIN, "s")),
    (3 * _HOUR, lambda s: f"{s // _MIN}m"),
    (8 * _HOUR, lambda s: _pair(s // _HOUR, "h", s // _MIN % 60, "m")),
    (48 * _HOUR, lambda s: f"{s // _HOUR}h"),
    (8 * _DAY, lambda s: _pair(s // _DAY, "d", s // _HOUR % 24, "h")),
    (2 * _YEAR, lambda s: f"{s // _DAY}d"),
    (8 * _YEAR, lambda s: _pair(s // _DAY // 365, "y", s // _DAY % 365, "d")),
    (float("inf"), lambda s: f"{s // _DAY // 365}y"),
)

_SHORT_STEPS: tuple[tuple[float, Callable[[int], str]], ...] = (
    (_MIN, lambda s: f"{s}s"),
    (_HOUR, lambda s: f"{s // _MIN}m"),
    (_DAY, lambda s: f"{s // _HOUR}h"),
    (_YEAR, lambda s: f"{s // _DAY}d"),
    (float("inf"), lambda s: f"{s // _YEAR}y"),
)


def _duration(d: timedelta, steps: tuple[tuple[float, Callable[[int], str]], ...]) -> str:
    seconds = _whole_seconds(d)
    # Up to 2s in the future counts as "now" (clock skew); further is invalid.
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    return next(fmt(seconds) for bound, fmt in steps if seconds < bound)


def human_duration(d: timedelta) -> str:
    """duration.HumanDuration: ~2-3 significant figures ("59s", "2m3s", "5h2m", "3d4h", "2y9d")."""
    return _duration(d, _HUMAN_STEPS)


def short_human_duration(d: timedelta) -> str:
    """duration.ShortHumanDuration: one unit only ("59s", "5m", "23h", "364d", "2y")."""
    return _duration(d, _SHORT_STEPS)


def parse_time(ts: str | None) -> datetime | None:
    """A metav1.Time / MicroTime JSON value; None (Go's zero time) when absent."""
    if not ts:
        return None
    t = datetime.fromisoformat(ts)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _since(ts: str | None, now: datetime) -> str:
    """translateTimestampSince."""
    t = parse_time(ts)
    return "<unknown>" if t is None else human_duration(now - t)


# ---------------------------------------------------------------------------------------------
# Column definitions
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    priority: int = 0
    format: str = ""

    def definition(self) -> dict:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


# SwaggerDoc texts the real column definitions reference.
_D_NAME = ("Name must be unique within a namespace. Is required when creating resources, although "
           "some resources may allow a client to request the generation of an appropriate name "
           "automatically. Name is primarily intended for creation idempotence and configuration "
           "definition. Cannot be updated. More info: "
           "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_D_CREATED = ("CreationTimestamp is a timestamp representing the server time when this object was "
              "created. It is not guaranteed to be set in happens-before order across separate "
              "operations. Clients may not set this value. It is represented in RFC3339 form and is "
              "in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
              "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
_D_NODE_ADDRESSES = ("List of addresses reachable to the node. Queried from cloud provider, if "
                     "available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses "
                     "Note: This field is declared as mergeable, but the merge key is not sufficiently "
                     "unique, which can cause data corruption when it is merged. Callers should instead "
                     "use a full-replacement patch. See https://pr.k8s.io/79391 for an example. "
                     "Consumers should assume that addresses can change during the lifetime of a Node. "
                     "However, there are some exceptions where this may not be possible, such as Pods "
                     "that inherit a Node's address in its own status or consumers of the downward API "
                     "(status.hostIP).")
_D_CONTAINERS = "Names of each container in the template."
_D_IMAGES = "Images referenced by each container in the template."

NAME = Column("Name", "string", _D_NAME, format="name")
AGE = Column("Age", "string", _D_CREATED)


def _s(name: str, description: str, priority: int = 0) -> Column:
    return Column(name, "string", description, priority)


def _i(name: str, description: str) -> Column:
    return Column(name, "integer", description)


# ---------------------------------------------------------------------------------------------
# Cell helpers
# ---------------------------------------------------------------------------------------------

def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(obj, dict) or obj.get(p) is None:
            return default
        obj = obj[p]
    return obj


def _name(obj: dict) -> str:
    return _get(obj, "metadata", "name", default="")


def _age(obj: dict, now: datetime) -> str:
    return _since(_get(obj, "metadata", "creationTimestamp"), now)


def _format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: sorted k=v pairs, `<none>` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _label_selector(sel: dict | None) -> str:
    """metav1.LabelSelectorAsSelector(sel).String(); "" for none or everything."""
    return str(selectors.selector_from_label_selector_object(sel))


def _format_label_selector(sel: dict | None) -> str:
    """metav1.FormatLabelSelector: like _label_selector, but `<none>` and `<error>`."""
    try:
        return _label_selector(sel) or "<none>"
    except errors.APIError:
        return "<error>"


def _containers(template_spec: dict) -> tuple[str, str]:
    """layoutContainerCells: comma-joined container names and images."""
    containers = template_spec.get("containers") or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _with_more(items: list[str], total: int, limit: int = 3) -> str:
    """listWithMoreString: the first `limit` items, then " + N more..."; `<unset>` if none."""
    if total > limit:
        return ",".join(items[:limit]) + f" + {total - limit} more..."
    return ",".join(items) or "<unset>"


# ---------------------------------------------------------------------------------------------
# Pod
# ---------------------------------------------------------------------------------------------

def _has_condition(pod: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in _get(pod, "status", "conditions", default=[]))


def _pod_initialized(pod: dict) -> bool:
    """isPodInitializedConditionTrue: the first Initialized condition decides."""
    for c in _get(pod, "status", "conditions", default=[]):
        if c.get("type") == "Initialized":
            return c.get("status") == "True"
    return False


def _terminated_reason(term: dict, prefix: str) -> str:
    if term.get("reason"):
        return prefix + term["reason"]
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def _finished_at(status: dict) -> datetime | None:
    return parse_time(_get(status, "lastState", "terminated", "finishedAt"))


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((t for t in (a, b) if t is not None), default=None)


def _pod_cells(pod: dict, now: datetime) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    init_containers = spec.get("initContainers") or []
    init_specs = {c.get("name"): c for c in init_containers}

    def restartable(name: str) -> bool:
        return (init_specs.get(name) or {}).get("restartPolicy") == "Always"

    total = len(spec.get("containers") or []) + sum(restartable(c.get("name")) for c in init_containers)
    ready = restarts = sidecar_restarts = 0
    last_restart = sidecar_last_restart = None
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
           for c in status.get("conditions") or []):
        reason = "SchedulingGated"

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        last_restart = _later(last_restart, _finished_at(cs))
        if restartable(cs.get("name")):
            sidecar_restarts += cs.get("restartCount", 0)
            sidecar_last_restart = _later(sidecar_last_restart, _finished_at(cs))
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if restartable(cs.get("name")) and cs.get("started"):
            ready += bool(cs.get("ready"))
            continue
        initializing = True
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_containers)}"
        break

    if not initializing or _pod_initialized(pod):
        restarts, last_restart = sidecar_restarts, sidecar_last_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, _finished_at(cs))
            state = cs.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated, "")
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(pod, "Ready") else "NotReady"

    if _get(pod, "metadata", "deletionTimestamp") is not None:
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell += f" ({human_duration(now - last_restart)} ago)"

    ips = status.get("podIPs") or []
    pod_ip = status.get("podIP") or (ips[0].get("ip") if ips else "")
    gates = spec.get("readinessGates") or []
    gate_cell = "<none>"
    if gates:
        conditions = {}
        for c in status.get("conditions") or []:
            conditions.setdefault(c.get("type"), c.get("status"))
        passed = sum(conditions.get(g.get("conditionType")) == "True" for g in gates)
        gate_cell = f"{passed}/{len(gates)}"
    return [_name(pod), f"{ready}/{total}", reason, restarts_cell, _age(pod, now),
            pod_ip or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gate_cell]


_POD_ROW_CONDITIONS = {
    "Succeeded": [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}],
    "Failed": [{"type": "Completed", "status": "True", "reason": "Failed",
                "message": "The pod failed."}],
}


# ---------------------------------------------------------------------------------------------
# Service
# ---------------------------------------------------------------------------------------------

def _lb_ingress(svc: dict) -> list[str]:
    ingress = _get(svc, "status", "loadBalancer", "ingress", default=[])
    return sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})


def _external_ips(svc: dict) -> list[str]:
    return _get(svc, "spec", "externalIPs", default=[])


_EXTERNAL_IP: dict[str, Callable[[dict], str]] = {
    "ClusterIP": lambda svc: ",".join(_external_ips(svc)) or "<none>",
    "NodePort": lambda svc: ",".join(_external_ips(svc)) or "<none>",
    "LoadBalancer": lambda svc: ",".join(_lb_ingress(svc) + _external_ips(svc)) or "<pending>",
    "ExternalName": lambda svc: _get(svc, "spec", "externalName", default=""),
}


def _service_ports(ports: list[dict]) -> str:
    def one(p: dict) -> str:
        node_port = f":{p['nodePort']}" if p.get("nodePort", 0) > 0 else ""
        return f"{p.get('port', 0)}{node_port}/{p.get('protocol') or 'TCP'}"
    return ",".join(one(p) for p in ports) or "<none>"


def _service_cells(svc: dict, now: datetime) -> list:
    spec = svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_name(svc), svc_type, cluster_ips[0] if cluster_ips else "<none>",
            _EXTERNAL_IP.get(svc_type, lambda _: "<unknown>")(svc),
            _service_ports(spec.get("ports") or []), _age(svc, now),
            _format_labels(spec.get("selector"))]


# ---------------------------------------------------------------------------------------------
# Endpoints and EndpointSlice
# ---------------------------------------------------------------------------------------------

def _host_port(ip: str, port: int) -> str:
    """net.JoinHostPort."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _endpoints_cell(ep: dict) -> str:
    """formatEndpoints with all ports: ip:port per address and port, first 3 + count."""
    subsets = ep.get("subsets") or []
    if not subsets:
        return "<none>"
    items: list[str] = []
    for ss in subsets:
        ips = [a.get("ip", "") for a in ss.get("addresses") or []]
        ports = ss.get("ports") or []
        # Headless services may have no ports: then the bare IPs are listed.
        items += ips if not ports else [_host_port(ip, p.get("port", 0)) for p in ports for ip in ips]
    if len(items) > 3:
        return ",".join(items[:3]) + f" + {len(items) - 3} more..."
    return ",".join(items)


def _slice_port(p: dict) -> str:
    if p.get("port") is not None:
        return str(p["port"])
    return p["name"] if p.get("name") is not None else "*"


def _endpoint_slice_cells(es: dict, now: datetime) -> list:
    ports = [_slice_port(p) for p in es.get("ports") or []]
    addresses = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(es), es.get("addressType", ""), _with_more(ports, len(ports)),
            _with_more(addresses, len(addresses)), _age(es, now)]


# ---------------------------------------------------------------------------------------------
# Node
# ---------------------------------------------------------------------------------------------

_ROLE_PREFIX = "node-role.kubernetes.io/"


def _node_roles(node: dict) -> str:
    roles = set()
    for k, v in (_get(node, "metadata", "labels", default={})).items():
        if k.startswith(_ROLE_PREFIX) and k[len(_ROLE_PREFIX):]:
            roles.add(k[len(_ROLE_PREFIX):])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return ",".join(sorted(roles)) or "<none>"


def _node_status(node: dict) -> str:
    ready = None
    for c in _get(node, "status", "conditions", default=[]):
        if c.get("type") == "Ready":
            ready = c  # the last Ready condition wins, as in the Go map
    status = ["Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"]
    if _get(node, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_address(node: dict, kind: str) -> str:
    return next((a.get("address", "") for a in _get(node, "status", "addresses", default=[])
                 if a.get("type") == kind), "<none>")


def _node_cells(node: dict, now: datetime) -> list:
    info = _get(node, "status", "nodeInfo", default={})
    return [_name(node), _node_status(node), _node_roles(node), _age(node, now),
            info.get("kubeletVersion", ""),
            _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


# ---------------------------------------------------------------------------------------------
# Event
# ---------------------------------------------------------------------------------------------

def _event_cells(ev: dict, now: datetime) -> list:
    first = _since(ev.get("firstTimestamp") or ev.get("eventTime"), now)
    last = _since(ev["lastTimestamp"], now) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 1  # singleton events of the new API have no count
    if ev.get("series") is not None:
        last = _since(ev["series"].get("lastObservedTime"), now)
        count = ev["series"].get("count", 0)
    involved = ev.get("involvedObject") or {}
    kind = involved.get("kind", "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    component = _get(ev, "source", "component") or ev.get("reportingComponent", "")
    host = _get(ev, "source", "host") or ev.get("reportingInstance", "")
    source = f"{component}, {host}" if host else component
    return [last, ev.get("type", ""), ev.get("reason", ""), target, involved.get("fieldPath", ""),
            source, ev.get("message", "").strip(), first, count, _name(ev)]


# ---------------------------------------------------------------------------------------------
# Workloads and the rest
# ---------------------------------------------------------------------------------------------

def _deployment_cells(d: dict, now: datetime) -> list:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    try:
        selector = _label_selector(spec.get("selector"))
    except errors.APIError:
        selector = "<invalid>"
    names, images = _containers(_get(spec, "template", "spec", default={}))
    return [_name(d), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(d, now),
            names, images, selector]


def _replica_set_cells(rs: dict, now: datetime) -> list:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers(_get(spec, "template", "spec", default={}))
    return [_name(rs), spec.get("replicas", 1), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(rs, now), names, images,
            _format_label_selector(spec.get("selector"))]


@dataclass(frozen=True)
class Printer:
    columns: tuple[Column, ...]
    cells: Callable[[dict, datetime], list]
    conditions: Callable[[dict], list] = lambda obj: []


PRINTERS: dict[str, Printer] = {
    "Pod": Printer((
        NAME,
        _s("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _s("Status", "The aggregate status of the containers in this pod."),
        _s("Restarts", "The number of times the containers in this pod have been restarted and when "
                       "the last container in this pod has restarted."),
        AGE,
        _s("IP", "podIP address allocated to the pod. Routable at least within the cluster. Empty if "
                 "not yet allocated.", 1),
        _s("Node", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a "
                   "candidate for scheduling by the scheduler defined in schedulerName. Once this field "
                   "is set, the kubelet for this node becomes responsible for the lifecycle of this pod. "
                   "This field should not be used to express a desire for the pod to be scheduled on a "
                   "specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/"
                   "assign-pod-node/#nodename", 1),
        _s("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the "
                             "node, but it cannot be scheduled right away as preemption victims receive "
                             "their graceful termination periods. This field does not guarantee that "
                             "the pod will be scheduled on this node. Scheduler may decide to place the "
                             "pod elsewhere if other nodes become available sooner. Scheduler may also "
                             "decide to give the resources on this node to a higher priority pod that "
                             "is created after preemption. As a result, this field may be different "
                             "than PodSpec.nodeName when the pod is scheduled.", 1),
        _s("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness. "
                              "A pod is ready when all its containers are ready AND all conditions "
                              "specified in the readiness gates have status equal to \"True\" More "
                              "info: https://git.k8s.io/enhancements/keps/sig-network/"
                              "580-pod-readiness-gates", 1),
    ), _pod_cells, lambda pod: _POD_ROW_CONDITIONS.get(_get(pod, "status", "phase"), [])),
    "Service": Printer((
        NAME,
        _s("Type", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options "
                   "are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
        _s("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly."),
        _s("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will "
                          "also accept traffic for this service.  These IPs are not managed by "
                          "Kubernetes."),
        _s("Port(s)", "The list of ports that are exposed by this service. More info: "
                      "https://kubernetes.io/docs/concepts/services-networking/service/"
                      "#virtual-ips-and-service-proxies"),
        AGE,
        _s("Selector", "Route service traffic to pods with label keys and values matching this "
                       "selector. If empty or not present, the service is assumed to have an external "
                       "process managing its endpoints, which Kubernetes will not modify. Only applies "
                       "to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is "
                       "ExternalName. More info: "
                       "https://kubernetes.io/docs/concepts/services-networking/service/", 1),
    ), _service_cells),
    "Endpoints": Printer((
        NAME,
        _s("Endpoints", "The set of all endpoints is the union of all subsets. Addresses are placed "
                        "into subsets according to the IPs they share."),
        AGE,
    ), lambda ep, now: [_name(ep), _endpoints_cell(ep), _age(ep, now)]),
    "EndpointSlice": Printer((
        NAME,
        _s("AddressType", "addressType specifies the type of address carried by this EndpointSlice. "
                          "All addresses in this slice must be the same type."),
        _s("Ports", "ports specifies the list of network ports exposed by each endpoint in this "
                    "slice."),
        _s("Endpoints", "endpoints is a list of unique endpoints in this slice. Each slice may include "
                        "a maximum of 1000 endpoints."),
        AGE,
    ), _endpoint_slice_cells),
    "Node": Printer((
        NAME,
        _s("Status", "The status of the node"),
        _s("Roles", "The roles of the node"),
        AGE,
        _s("Version", "Kubelet Version reported by the node."),
        _s("Internal-IP", _D_NODE_ADDRESSES, 1),
        _s("External-IP", _D_NODE_ADDRESSES, 1),
        _s("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 "
                       "(wheezy)).", 1),
        _s("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. "
                             "3.16.0-0.bpo.4-amd64).", 1),
        _s("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote "
                                "API (e.g. containerd://1.4.2).", 1),
    ), _node_cells),
    "Namespace": Printer((
        NAME,
        _s("Status", "The status of the namespace"),
        AGE,
    ), lambda ns, now: [_name(ns), _get(ns, "status", "phase", default=""), _age(ns, now)]),
    "Event": Printer((
        _s("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
        _s("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
        _s("Reason", "This should be a short, machine understandable string that gives the reason for "
                     "the transition into the object's current status."),
        _s("Object", "The object that this event is about."),
        _s("Subobject", "If referring to a piece of an object instead of an entire object, this string "
                        "should contain a valid JSON/Go field access statement, such as "
                        "desiredState.manifest.containers[2].", 1),
        _s("Source", "The component reporting this event. Should be a short machine understandable "
                     "string.", 1),
        _s("Message", "A human-readable description of the status of this operation."),
        _s("First Seen", "The time at which the event was first recorded. (Time of server receipt is "
                         "in TypeMeta.)", 1),
        _s("Count", "The number of times this event has occurred.", 1),
        Column("Name", "string", _D_NAME, 1, "name"),
    ), _event_cells),
    "ConfigMap": Printer((
        NAME,
        _s("Data", "Data contains the configuration data. Each key must consist of alphanumeric "
                   "characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the "
                   "BinaryData field. The keys stored in Data must not overlap with the keys in the "
                   "BinaryData field, this is enforced during validation process."),
        AGE,
    ), lambda cm, now: [_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}),
                        _age(cm, now)]),
    "Deployment": Printer((
        NAME,
        _s("Ready", "Number of the pod with ready state"),
        _s("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have "
                         "the desired template spec."),
        _s("Available", "Total number of available pods (ready for at least minReadySeconds) targeted "
                        "by this deployment."),
        AGE,
        _s("Containers", _D_CONTAINERS, 1),
        _s("Images", _D_IMAGES, 1),
        _s("Selector", "Label selector for pods. Existing ReplicaSets whose pods are selected by this "
                       "will be the ones affected by this deployment.", 1),
    ), _deployment_cells),
    "ReplicaSet": Printer((
        NAME,
        _i("Desired", "Replicas is the number of desired replicas. This is a pointer to distinguish "
                      "between explicit zero and unspecified. Defaults to 1. More info: "
                      "https://kubernetes.io/docs/concepts/workloads/controllers/"
                      "replicationcontroller/#what-is-a-replicationcontroller"),
        _i("Current", "Replicas is the most recently observed number of replicas. More info: "
                      "https://kubernetes.io/docs/concepts/workloads/controllers/"
                      "replicationcontroller/#what-is-a-replicationcontroller"),
        _i("Ready", "The number of ready replicas for this replica set."),
        AGE,
        _s("Containers", _D_CONTAINERS, 1),
        _s("Images", _D_IMAGES, 1),
        _s("Selector", "Selector is a label query over pods that should match the replica count. If "
                       "the selector is empty, it is defaulted to the labels present on the pod "
                       "template. Label keys and values that must match in order to be controlled by "
                       "this replica set. More info: https://kubernetes.io/docs/concepts/overview/"
                       "working-with-objects/labels/#label-selectors", 1),
    ), _replica_set_cells),
    "Lease": Printer((
        NAME,
        _s("Holder", "holderIdentity contains the identity of the holder of a current lease."),
        AGE,
    ), lambda lease, now: [_name(lease), _get(lease, "spec", "holderIdentity", default=""),
                           _age(lease, now)]),
}


def _created_at(obj: dict, now: datetime) -> list:
    t = parse_time(_get(obj, "metadata", "creationTimestamp"))
    stamp = t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "0001-01-01T00:00:00Z"
    return [_name(obj), stamp]


# rest.NewDefaultTableConvertor: what the apiserver prints for kinds without a printer.
DEFAULT_PRINTER = Printer((NAME, Column("Created At", "date", _D_CREATED)), _created_at)


# ---------------------------------------------------------------------------------------------
# The Table
# ---------------------------------------------------------------------------------------------

def _full_object(kind: str, obj: dict) -> dict:
    """The object itself, with kind and apiVersion filled in if the caller's copy lacks them."""
    resource = BY_KIND.get(kind)
    return {"kind": kind, "apiVersion": resource.api_version, **obj} if resource else obj


_ROW_OBJECT: dict[str, Callable[[str, dict], dict | None]] = {
    "None": lambda kind, obj: None,
    "Metadata": lambda kind, obj: {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                   "metadata": obj.get("metadata") or {}},
    "Object": _full_object,
}


def table(kind: str, objects: list[dict], now: datetime, include_object: str = "Metadata",
          resource_version: str = "", continue_token: str = "", remaining: int | None = None,
          include_headers: bool = True) -> dict:
    """A meta.k8s.io/v1 Table of `objects` (all of `kind`), as kube-apiserver returns it."""
    embed = _ROW_OBJECT.get(include_object or "Metadata")
    if embed is None:
        raise errors.bad_request(f"unrecognized includeObject value: {errors.go_value(include_object)}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    printer = PRINTERS.get(kind, DEFAULT_PRINTER)
    rows = []
    for obj in objects:
        row: dict = {"cells": printer.cells(obj, now)}
        if conditions := printer.conditions(obj):
            row["conditions"] = conditions
        if (embedded := embed(kind, obj)) is not None:
            row["object"] = embedded
        rows.append(row)
    metadata: dict = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [c.definition() for c in printer.columns] if include_headers else [],
        "rows": rows,
    }
