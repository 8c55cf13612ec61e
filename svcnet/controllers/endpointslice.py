"""The EndpointSlice controller, as kube-controller-manager 1.32 runs it.

Theory of operation
-------------------
The module has a pure core and a controller around it.

The pure core (no I/O) is a port of k8s.io/endpointslice (reconciler.go, utils.go,
util/controller_utils.go, util/endpointset.go, util/trigger_time_tracker.go):

* `pod_to_endpoint`: conditions are `serving` = the pod's Ready condition is True,
  `terminating` = deletionTimestamp set, `ready` = publishNotReadyAddresses or (serving and not
  terminating); `nodeName` when the pod has one, `zone` from the Node's
  `topology.kubernetes.io/zone` label, `hostname` only when spec.hostname is set and
  spec.subdomain is the Service's name (same namespace).
* Which pods: terminal pods (Succeeded/Failed) and pods without an IP are left out; terminating
  pods are kept. A pod whose Node is not in the Node cache (including a pod with no nodeName) is
  skipped and the sync is retried later, unless the Service has publishNotReadyAddresses.
* Grouping: one group of slices per address type (from spec.ipFamilies) and per resolved port
  list (`endpoint_ports`: a named targetPort is looked up per pod in its containers' ports and
  in restartable init containers, matching the protocol; a port that does not resolve is left
  out of that pod's list, so one Service can produce several port groups).
* `reconcile` is reconcileByAddressType + reconcileByPortMapping + finalize:
  1. existing slices not owned by the Service (ownerReference uid) are deleted;
  2. in every existing slice, endpoints no longer desired are removed and changed ones replaced
     (endpoints are identified by addresses + hostname + pod namespace/name; conditions, node,
     zone and targetRef are compared beyond that); a slice left empty is deleted, a changed one
     is updated; a slice whose only change is the Service's labels is updated too;
  3. remaining endpoints fill the changed slices, fullest first;
  4. what is left goes into the one unchanged slice that ends closest to full, if it fits,
     else into new slices of at most `max_per_slice` endpoints. Nothing is ever rebalanced.
  5. a Service without endpoints gets one placeholder slice with `ports: []` and no endpoints
     (an existing identical placeholder is kept);
  6. finalize turns creates into updates of slices that would otherwise be deleted (same
     address type, owned), so a port change or a placeholder reuses the slice name.
  Slices that need no change produce no write.
* `TriggerTimeTracker` computes `endpoints.kubernetes.io/last-change-trigger-time` as the
  real one: the Service's creationTimestamp on its first sync, afterwards the earliest
  Ready-condition lastTransitionTime (or Service creation) that changed since the last sync;
  when nothing it tracks changed (e.g. a pod was deleted) the annotation is removed from the
  slices written.

The controller (`EndpointSliceController`) talks to the API server only through
`svcnet.client`. Informers on Services, Pods, Nodes and EndpointSlices are shared per client
with the Endpoints controller (`SharedCaches`), with label indexes so that no event scans all
objects: pods are indexed by (namespace, label, value), Services by (namespace, selector
label, value), slices by (namespace, service-name label). A pod event queues exactly the
Services whose selector matches its new or old labels (GetServicesToUpdateOnPodChange: on a
label change with no endpoint change only the symmetric difference). Keys are queued in a
deduplicating work queue (a key being synced is re-queued once after it finishes), synced by
`workers` coroutines (default 5, as --concurrent-service-endpoint-syncs), never the same key
twice at once. Failed syncs are retried with the real backoff (1 s doubling to 1000 s, 15
tries); a 409 Conflict is retried after a short backoff (50 ms doubling).

Writes the controller made are remembered until its informer catches up (an overlay over the
slice cache), so a sync that follows a write immediately sees its own slices: this replaces the
real controller's "stale informer cache" retry without its one-second delay.

Deviations, so that no stale slice outlives its reason even without a garbage collector: when
a Service is deleted, loses its selector, or becomes ExternalName, the controller deletes the
slices it manages for it (managed-by label ours and service-name label). In a cluster the
garbage collector does the first through the slices' ownerReference (a second delete is a
harmless 404), and the real controller leaves the slices of the other two cases in place.
Slices managed by anyone else are never touched. Slices whose Service no longer exists are
removed at start.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND

log = logging.getLogger("svcnet.controllers.endpointslice")

SERVICE, POD, NODE, SLICE, ENDPOINTS = (BY_KIND["Service"], BY_KIND["Pod"], BY_KIND["Node"],
                                        BY_KIND["EndpointSlice"], BY_KIND["Endpoints"])

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ZONE = "topology.kubernetes.io/zone"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
FIELD_MANAGER = "kube-controller-manager"
DEFAULT_MAX_ENDPOINTS_PER_SLICE = 100
_RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)

IPV4, IPV6 = "IPv4", "IPv6"


# =============================================================================================
# Pure helpers shared with the Endpoints controller
# =============================================================================================

def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def status(obj: dict) -> dict:
    return obj.get("status") or {}


def service_selector(svc: dict) -> dict | None:
    """spec.selector, or None when the Service has none. An empty map counts as none: a
    Service stored by kube-apiserver cannot keep an empty selector (it round-trips as nil)."""
    sel = spec(svc).get("selector")
    return sel or None


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    """labels.SelectorFromSet(selector).Matches(labels) (svcnet.api.selectors.selector_from_map):
    every key present with an equal value."""
    labels = labels or {}
    for k, v in selector.items():
        if labels.get(k) != v or k not in labels:
            return False
    return True


def is_pod_ready(pod: dict) -> bool:
    for c in status(pod).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_ready_transition(pod: dict) -> str | None:
    for c in status(pod).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("lastTransitionTime") or None
    return None


def is_pod_terminal(pod: dict) -> bool:
    return status(pod).get("phase") in ("Succeeded", "Failed")


def pod_ips(pod: dict) -> list[str]:
    """status.podIPs (the API server fills it from status.podIP)."""
    st = status(pod)
    ips = [p.get("ip", "") for p in st.get("podIPs") or () if p.get("ip")]
    if not ips and st.get("podIP"):
        ips = [st["podIP"]]
    return ips


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """endpointsliceutil.ShouldPodBeInEndpoints."""
    if is_pod_terminal(pod):
        return False
    st = status(pod)
    if not st.get("podIP") and not st.get("podIPs"):
        return False
    if not include_terminating and meta(pod).get("deletionTimestamp"):
        return False
    return True


def should_set_hostname(pod: dict, svc: dict) -> bool:
    ps = spec(pod)
    return bool(ps.get("hostname")) and ps.get("subdomain") == meta(svc).get("name") \
        and meta(svc).get("namespace") == meta(pod).get("namespace")


def is_service_ip_set(svc: dict) -> bool:
    ip = spec(svc).get("clusterIP") or ""
    return ip not in ("", "None")


def parse_ip(s: str) -> tuple[str, bool] | None:
    """(canonical text, is IPv6) as net.ParseIPSloppy(s).String() and utilnet.IsIPv6: IPv4 with
    leading zeros reads as decimal, an IPv4-mapped IPv6 address is IPv4."""
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        parts = s.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return None
        try:
            ip = ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
        except ValueError:
            return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped), False
        return ip.compressed, True
    return str(ip), False


def is_ipv6_string(s: str) -> bool:
    p = parse_ip(s)
    return bool(p and p[1])


def find_port(pod: dict, svc_port: dict) -> int | None:
    """FindPort: a numeric targetPort is used as is; a named one is looked up in the pod's
    containers' ports (and restartable init containers'), with the same protocol."""
    target = svc_port.get("targetPort")
    if target is None or target == "":
        target = svc_port.get("port")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    proto = svc_port.get("protocol") or "TCP"
    ps = spec(pod)
    for c in ps.get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name") == target and (p.get("protocol") or "TCP") == proto:
                return p.get("containerPort")
    for c in ps.get("initContainers") or ():
        if c.get("restartPolicy") != "Always":
            continue
        for p in c.get("ports") or ():
            if p.get("name") == target and (p.get("protocol") or "TCP") == proto:
                return p.get("containerPort")
    return None


def address_types(svc: dict) -> list[str]:
    """getAddressTypesForService, in spec.ipFamilies order."""
    out: list[str] = []
    for fam in spec(svc).get("ipFamilies") or ():
        at = IPV4 if fam == "IPv4" else IPV6 if fam == "IPv6" else None
        if at and at not in out:
            out.append(at)
    if out:
        return out
    if is_service_ip_set(svc):
        return [IPV6 if is_ipv6_string(spec(svc)["clusterIP"]) else IPV4]
    return [IPV4, IPV6]


# ---- endpoints and ports ---------------------------------------------------------------------

def endpoint_ports(svc: dict, pod: dict) -> list[dict]:
    """getEndpointPorts: the Service's ports in order, each resolved against the pod."""
    ports = spec(svc).get("ports") or []
    if not ports and spec(svc).get("clusterIP") == "None":
        return []
    out = []
    for sp in ports:
        num = find_port(pod, sp)
        if num is None:
            continue
        p = {"name": sp.get("name") or "", "protocol": sp.get("protocol") or "TCP", "port": num}
        if sp.get("appProtocol") is not None:
            p["appProtocol"] = sp["appProtocol"]
        out.append(p)
    return out


def _port_tuple(p: dict) -> tuple:
    ap = p.get("appProtocol")
    port = p.get("port")
    return (p.get("name") or "", p.get("protocol") or "TCP", -1 if port is None else port,
            ap is not None, ap or "")


def port_map_key(ports: Iterable[dict] | None) -> tuple:
    """NewPortMapKey: the set of ports, order-independent (the API server defaults a missing
    name to "" and protocol to TCP, so those read the same)."""
    return tuple(sorted(_port_tuple(p) for p in ports or ()))


def pod_to_endpoint(pod: dict, node: dict | None, svc: dict, address_type: str) -> dict:
    serving = is_pod_ready(pod)
    terminating = bool(meta(pod).get("deletionTimestamp"))
    ready = bool(spec(svc).get("publishNotReadyAddresses")) or (serving and not terminating)
    addrs = []
    for ip in pod_ips(pod):
        parsed = parse_ip(ip)
        if parsed is None:
            continue
        text, v6 = parsed
        if v6 == (address_type == IPV6):
            addrs.append(text)
    pm = meta(pod)
    ep: dict[str, Any] = {"addresses": addrs,
                          "conditions": {"ready": ready, "serving": serving,
                                         "terminating": terminating}}
    if should_set_hostname(pod, svc):
        ep["hostname"] = spec(pod)["hostname"]
    ep["targetRef"] = {"kind": "Pod", "namespace": pm.get("namespace", ""),
                       "name": pm.get("name", ""), "uid": pm.get("uid", "")}
    node_name = spec(pod).get("nodeName")
    if node_name:
        ep["nodeName"] = node_name
    zone = ((node or {}).get("metadata") or {}).get("labels", {}).get(LABEL_ZONE) if node else None
    if zone:
        ep["zone"] = zone
    return ep


def endpoint_key(ep: dict) -> tuple:
    """hashEndpoint: sorted addresses, hostname and the target's namespace/name."""
    tr = ep.get("targetRef") or {}
    return (tuple(sorted(ep.get("addresses") or ())), ep.get("hostname") or "",
            tr.get("namespace") or "", tr.get("name") or "")


def _ref_without_rv(ref: dict | None) -> dict | None:
    if ref is None:
        return None
    return {k: v for k, v in ref.items() if k != "resourceVersion" and v not in ("", None)}


def endpoints_equal_beyond_hash(a: dict, b: dict) -> bool:
    """EndpointsEqualBeyondHash: node, zone, the three conditions and targetRef (without its
    resourceVersion)."""
    if a.get("nodeName") != b.get("nodeName") or a.get("zone") != b.get("zone"):
        return False
    ca, cb = a.get("conditions") or {}, b.get("conditions") or {}
    for c in ("ready", "serving", "terminating"):
        if ca.get(c) != cb.get(c):
            return False
    return _ref_without_rv(a.get("targetRef")) == _ref_without_rv(b.get("targetRef"))


# ---- slices ------------------------------------------------------------------------------

def owner_reference(svc: dict) -> dict:
    m = meta(svc)
    return {"apiVersion": "v1", "kind": "Service", "name": m.get("name", ""),
            "uid": m.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def owned_by(slice_: dict, svc: dict) -> bool:
    uid = meta(svc).get("uid")
    for o in meta(slice_).get("ownerReferences") or ():
        if o.get("uid") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1":
            return True
    return False


def slice_labels(slice_: dict, svc: dict, controller_name: str = CONTROLLER_NAME
                 ) -> tuple[dict, bool]:
    """setEndpointSliceLabels: (the labels the slice should carry, whether the Service's
    non-reserved labels differ from the slice's)."""
    ep_labels = {k: v for k, v in (meta(slice_).get("labels") or {}).items()
                 if k not in _RESERVED_LABELS}
    svc_labels = {k: v for k, v in (meta(svc).get("labels") or {}).items()
                  if k not in _RESERVED_LABELS}
    changed = ep_labels != svc_labels
    if not is_service_ip_set(svc):
        svc_labels[LABEL_HEADLESS] = ""
    svc_labels[LABEL_SERVICE_NAME] = meta(svc).get("name", "")
    svc_labels[LABEL_MANAGED_BY] = controller_name
    return svc_labels, changed


def new_slice(svc: dict, ports: list[dict], address_type: str,
              controller_name: str = CONTROLLER_NAME) -> dict:
    m = meta(svc)
    s = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"generateName": f"{m.get('name', '')}-", "namespace": m.get("namespace", ""),
                      "labels": {}, "ownerReferences": [owner_reference(svc)]},
         "addressType": address_type, "endpoints": [], "ports": [dict(p) for p in ports]}
    s["metadata"]["labels"], _ = slice_labels(s, svc, controller_name)
    return s


def wire_slice(s: dict) -> dict:
    """The slice as kube-controller-manager's write reads back: empty `endpoints` and `ports`
    are null (they travel as protobuf, where an empty list is absent)."""
    out = dict(s)
    for f in ("endpoints", "ports"):
        if not out.get(f):
            out[f] = None
    return out


def _copy_slice(s: dict) -> dict:
    c = dict(s)
    c["metadata"] = dict(meta(s))
    c["endpoints"] = list(s.get("endpoints") or ())
    return c


def _owner_ref_norm(o: dict) -> tuple:
    return (o.get("apiVersion", ""), o.get("kind", ""), o.get("name", ""), o.get("uid", ""),
            o.get("controller"), o.get("blockOwnerDeletion"))


def placeholder_equal(a: dict, b: dict) -> bool:
    """placeholderSliceCompare.DeepEqual: namespace, labels, ownerReferences, addressType,
    endpoints and ports (nil and empty alike)."""
    ma, mb = meta(a), meta(b)
    return (ma.get("namespace", "") == mb.get("namespace", "")
            and (ma.get("labels") or {}) == (mb.get("labels") or {})
            and [_owner_ref_norm(o) for o in ma.get("ownerReferences") or ()]
            == [_owner_ref_norm(o) for o in mb.get("ownerReferences") or ()]
            and a.get("addressType") == b.get("addressType")
            and list(a.get("endpoints") or ()) == list(b.get("endpoints") or ())
            and [_port_tuple(p) for p in a.get("ports") or ()]
            == [_port_tuple(p) for p in b.get("ports") or ()])


def set_trigger_time(slice_: dict, trigger_time: str | None) -> None:
    """addTriggerTimeAnnotation: set it, or remove it when there is no new trigger time."""
    m = slice_["metadata"]
    ann = dict(m.get("annotations") or {})
    if trigger_time:
        ann[ANNOTATION_TRIGGER_TIME] = trigger_time
    else:
        ann.pop(ANNOTATION_TRIGGER_TIME, None)
    if ann:
        m["annotations"] = ann
    else:
        m.pop("annotations", None)


def slice_content_equal(a: dict, b: dict) -> bool:
    """Whether writing `a` over `b` would change anything the controller owns."""
    ma, mb = meta(a), meta(b)
    if (ma.get("labels") or {}) != (mb.get("labels") or {}):
        return False
    if (ma.get("annotations") or {}) != (mb.get("annotations") or {}):
        return False
    if [_owner_ref_norm(o) for o in ma.get("ownerReferences") or ()] != \
            [_owner_ref_norm(o) for o in mb.get("ownerReferences") or ()]:
        return False
    if a.get("addressType") != b.get("addressType"):
        return False
    if [_port_tuple(p) for p in a.get("ports") or ()] != [_port_tuple(p) for p in b.get("ports") or ()]:
        return False
    ea, eb = a.get("endpoints") or [], b.get("endpoints") or []
    if len(ea) != len(eb):
        return False
    return all(endpoint_key(x) == endpoint_key(y) and endpoints_equal_beyond_hash(x, y)
               for x, y in zip(ea, eb))


# ---- the reconciler ------------------------------------------------------------------------

@dataclass
class Plan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)
    # Node names pods referred to that are not in the Node cache (those pods were skipped; the
    # real controller returns an error so the Service is synced again later).
    missing_nodes: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def matching_pods(svc: dict, pods: Iterable[dict]) -> list[dict]:
    sel = service_selector(svc)
    if sel is None:
        return []
    ns = meta(svc).get("namespace", "")
    return [p for p in pods if meta(p).get("namespace", "") == ns
            and selector_matches(sel, meta(p).get("labels"))]


def _get_slice_to_fill(slices: list[dict], num: int, max_eps: int) -> dict | None:
    closest_diff, closest = max_eps, None
    for s in slices:
        diff = max_eps - (num + len(s.get("endpoints") or ()))
        if 0 <= diff < closest_diff:
            closest_diff, closest = diff, s
            if diff == 0:
                return s
    return closest


def _pop_first(d: dict) -> dict:
    k = next(iter(d))
    return d.pop(k)


def _reconcile_by_port_mapping(svc: dict, existing: list[dict], desired: dict[tuple, dict],
                               ports: list[dict], address_type: str, max_eps: int,
                               controller_name: str) -> tuple[list, list, list]:
    slices_by_name: dict[str, dict] = {}
    unchanged: dict[str, None] = {}
    to_update: dict[str, None] = {}
    to_delete: dict[str, None] = {}

    # 1. remove endpoints no longer desired, replace changed ones
    for s in existing:
        name = meta(s)["name"]
        slices_by_name[name] = s
        new_eps = []
        updated = False
        cur = s.get("endpoints") or []
        for ep in cur:
            k = endpoint_key(ep)
            got = desired.get(k)
            if got is not None:
                new_eps.append(got)
                if not endpoints_equal_beyond_hash(got, ep):
                    updated = True
                del desired[k]
        labels, labels_changed = slice_labels(s, svc, controller_name)
        if updated or len(cur) != len(new_eps):
            if not new_eps:
                to_delete[name] = None
            else:
                c = _copy_slice(s)
                c["endpoints"] = new_eps
                c["metadata"]["labels"] = labels
                slices_by_name[name] = c
                to_update[name] = None
        elif labels_changed:
            c = _copy_slice(s)
            c["metadata"]["labels"] = labels
            slices_by_name[name] = c
            to_update[name] = None
        else:
            unchanged[name] = None

    # 2. fill the changed slices, fullest first
    if desired and to_update:
        for s in sorted((slices_by_name[n] for n in to_update),
                        key=lambda s: -len(s["endpoints"])):
            while desired and len(s["endpoints"]) < max_eps:
                s["endpoints"].append(_pop_first(desired))

    # 3. the rest into one unchanged slice if it fits, else new slices
    to_create: list[dict] = []
    while desired:
        fill = None
        if len(desired) < max_eps and unchanged:
            fill = _get_slice_to_fill([slices_by_name[n] for n in unchanged], len(desired), max_eps)
        if fill is None:
            fill = new_slice(svc, ports, address_type, controller_name)
        else:
            fill = _copy_slice(fill)
            slices_by_name[meta(fill)["name"]] = fill
        while desired and len(fill["endpoints"]) < max_eps:
            fill["endpoints"].append(_pop_first(desired))
        name = meta(fill).get("name")
        if name:
            to_update[name] = None
            unchanged.pop(name, None)
        else:
            to_create.append(fill)
    return (to_create, [slices_by_name[n] for n in to_update],
            [slices_by_name[n] for n in to_delete])


def _reconcile_by_address_type(svc: dict, pods: list[dict], nodes: Mapping[str, dict],
                               existing: list[dict], address_type: str, max_eps: int,
                               controller_name: str, plan: Plan) -> tuple[list, list, list]:
    to_create: list[dict] = []
    to_update: list[dict] = []
    to_delete: list[dict] = []
    existing_by_pm: dict[tuple, list[dict]] = {}
    for s in existing:
        if owned_by(s, svc):
            existing_by_pm.setdefault(port_map_key(s.get("ports")), []).append(s)
        else:
            to_delete.append(s)

    publish_not_ready = bool(spec(svc).get("publishNotReadyAddresses"))
    desired_ports: dict[tuple, list[dict]] = {}
    desired_eps: dict[tuple, dict[tuple, dict]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(svc, pod)
        pm = port_map_key(ports)
        eps = desired_eps.setdefault(pm, {})
        desired_ports.setdefault(pm, ports)
        node_name = spec(pod).get("nodeName") or ""
        node = nodes.get(node_name) if node_name else None
        if node is None and not publish_not_ready:
            # "skipping Pod for Service, Node not found": the sync is retried later
            plan.missing_nodes.add(node_name)
            continue
        ep = pod_to_endpoint(pod, node, svc, address_type)
        if ep["addresses"]:
            eps[endpoint_key(ep)] = ep

    for pm, desired in desired_eps.items():
        c, u, d = _reconcile_by_port_mapping(svc, existing_by_pm.get(pm, []), desired,
                                             desired_ports[pm], address_type, max_eps,
                                             controller_name)
        to_create += c
        to_update += u
        to_delete += d
    for pm, slices in existing_by_pm.items():
        if pm not in desired_eps:
            to_delete += slices

    if len(existing) == len(to_delete) and not to_create:
        placeholder = new_slice(svc, [], address_type, controller_name)
        if len(to_delete) == 1 and placeholder_equal(to_delete[0], placeholder):
            to_delete = []
        else:
            to_create.append(placeholder)

    # finalize: reuse slices that would be deleted for slices that would be created
    i = 0
    while i < len(to_delete) and to_create:
        d = to_delete[i]
        c = to_create[-1]
        if d.get("addressType") == c.get("addressType") and owned_by(d, svc):
            c["metadata"]["name"] = meta(d)["name"]  # generateName stays, as in the real one
            if meta(d).get("resourceVersion"):
                c["metadata"]["resourceVersion"] = meta(d)["resourceVersion"]
            to_create.pop()
            to_update.append(c)
            to_delete.pop(i)
        else:
            i += 1
    return to_create, to_update, to_delete


def reconcile(service: dict, pods: Iterable[dict], nodes: Mapping[str, dict],
              existing_slices: Iterable[dict], max_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
              trigger_time: str | None = None, controller_name: str = CONTROLLER_NAME) -> Plan:
    """What to create, update and delete so that `existing_slices` (the slices this controller
    manages for `service`) represent `pods`. `nodes` maps node name to Node. Pods outside the
    Service's namespace or selector are ignored. Creates and updates carry the trigger-time
    annotation (`trigger_time`, RFC 3339) or lose it when it is None."""
    plan = Plan()
    existing = [s for s in existing_slices if not meta(s).get("deletionTimestamp")]
    if service_selector(service) is None or spec(service).get("type") == "ExternalName":
        plan.delete = existing
        return plan
    pods = sorted(matching_pods(service, pods),
                  key=lambda p: (meta(p).get("name", ""), meta(p).get("uid", "")))
    supported = address_types(service)
    by_type: dict[str, list[dict]] = {}
    unsupported: list[dict] = []
    for s in sorted(existing, key=lambda s: meta(s).get("name", "")):
        if s.get("addressType") not in supported:
            unsupported.append(s)
        else:
            by_type.setdefault(s["addressType"], []).append(s)
    for at in supported:
        c, u, d = _reconcile_by_address_type(service, pods, nodes, by_type.get(at, []), at,
                                             max_per_slice, controller_name, plan)
        plan.create += c
        plan.update += u
        plan.delete += d
    plan.delete += unsupported
    if meta(service).get("deletionTimestamp"):
        plan.create = []  # never create slices for a Service being deleted
    for s in plan.create + plan.update:
        set_trigger_time(s, trigger_time)
    return plan


def desired_slices(service: dict, pods: Iterable[dict], nodes: Mapping[str, dict],
                   max_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE) -> list[dict]:
    """The slices a first sync of `service` creates (no existing slices)."""
    return reconcile(service, pods, nodes, [], max_per_slice).create


# ---- trigger time ------------------------------------------------------------------------

def _parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def format_rfc3339nano(t: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds without trailing zeros."""
    t = t.astimezone(timezone.utc)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        base += "." + f"{t.microsecond:06d}".rstrip("0")
    return base + "Z"


class TriggerTimeTracker:
    """util.TriggerTimeTracker: the EndpointsLastChangeTriggerTime of one sync."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], tuple[datetime | None, dict[str, datetime]]] = {}

    def compute(self, namespace: str, service: dict, pods: Iterable[dict]) -> str | None:
        key = (namespace, meta(service).get("name", ""))
        state = self._states.get(key)
        was_known = state is not None
        last_svc, last_pods = state if state else (None, {})
        min_changed: datetime | None = None
        pod_times: dict[str, datetime] = {}
        for pod in pods:
            t = _parse_time(pod_ready_transition(pod))
            if t is None:
                continue
            name = meta(pod).get("name", "")
            pod_times[name] = t
            prev = last_pods.get(name)
            if prev is None or t > prev:
                min_changed = t if min_changed is None or t < min_changed else min_changed
        svc_time = _parse_time(meta(service).get("creationTimestamp"))
        if svc_time is not None and (last_svc is None or svc_time > last_svc):
            min_changed = svc_time if min_changed is None or svc_time < min_changed else min_changed
        self._states[key] = (svc_time, pod_times)
        if not was_known:
            return format_rfc3339nano(svc_time) if svc_time else None
        return format_rfc3339nano(min_changed) if min_changed else None

    def delete(self, namespace: str, name: str) -> None:
        self._states.pop((namespace, name), None)


def pod_endpoints_changed(old: dict, new: dict) -> tuple[bool, bool]:
    """podEndpointsChanged: (the pod changed in a way that may change its endpoints, its
    labels/hostname/subdomain changed). A move to a terminal phase counts as a change too."""
    mo, mn = meta(old), meta(new)
    labels_changed = (mo.get("labels") or {}) != (mn.get("labels") or {}) or \
        spec(old).get("hostname") != spec(new).get("hostname") or \
        spec(old).get("subdomain") != spec(new).get("subdomain")
    if mo.get("deletionTimestamp") != mn.get("deletionTimestamp"):
        return True, labels_changed
    if is_pod_ready(old) != is_pod_ready(new):
        return True, labels_changed
    if pod_ips(old) != pod_ips(new):
        return True, labels_changed
    if is_pod_terminal(old) != is_pod_terminal(new):
        return True, labels_changed
    if spec(old).get("nodeName") != spec(new).get("nodeName"):
        return True, labels_changed
    return False, labels_changed


# =============================================================================================
# Runtime: work queue, indexes, shared informers
# =============================================================================================

class WorkQueue:
    """A deduplicating asyncio work queue with delayed adds and per-key exponential backoff,
    with client-go workqueue semantics: a key is never handed out twice at once; a key added
    while it is being processed is handed out again once `done` is called."""

    def __init__(self, base_delay: float = 1.0, max_delay: float = 1000.0):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: collections.deque = collections.deque()
        self._dirty: set = set()
        self._processing: set = set()
        self._failures: dict = {}
        self._waiting: dict = {}  # key -> (due time, TimerHandle)
        self._wake = asyncio.Event()
        self._shutdown = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake.set()

    def _fire(self, key) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_after(self, key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        if self._shutdown:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        cur = self._waiting.get(key)
        if cur is not None:
            if cur[0] <= due:
                return
            cur[1].cancel()
        self._waiting[key] = (due, loop.call_at(due, self._fire, key))

    def add_rate_limited(self, key, base: float | None = None) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        b = self.base_delay if base is None else base
        self.add_after(key, min(b * (2 ** n), self.max_delay))

    def num_requeues(self, key) -> int:
        return self._failures.get(key, 0)

    def forget(self, key) -> None:
        self._failures.pop(key, None)

    async def get(self):
        while not self._queue:
            if self._shutdown:
                return None
            self._wake.clear()
            await self._wake.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutdown:
            self._queue.append(key)
            self._wake.set()

    def shutdown(self) -> None:
        self._shutdown = True
        for _, h in self._waiting.values():
            h.cancel()
        self._waiting.clear()
        self._wake.set()


class LabelIndex:
    """(namespace, key, value) -> object keys having that label; object key -> its labels."""

    def __init__(self) -> None:
        self.by_pair: dict[tuple[str, str, str], set[str]] = {}
        self.labels: dict[str, tuple[str, dict]] = {}

    def set(self, key: str, namespace: str, labels: Mapping[str, str] | None) -> None:
        labels = dict(labels or {})
        cur = self.labels.get(key)
        if cur is not None:
            if cur[1] == labels:
                return
            self.remove(key)
        self.labels[key] = (namespace, labels)
        for k, v in labels.items():
            self.by_pair.setdefault((namespace, k, v), set()).add(key)

    def remove(self, key: str) -> None:
        cur = self.labels.pop(key, None)
        if cur is None:
            return
        ns, labels = cur
        for k, v in labels.items():
            s = self.by_pair.get((ns, k, v))
            if s is not None:
                s.discard(key)
                if not s:
                    del self.by_pair[(ns, k, v)]

    def matching(self, namespace: str, selector: Mapping[str, str]) -> list[str]:
        """Keys whose labels match every pair of a non-empty `selector`."""
        best: set[str] | None = None
        for k, v in selector.items():
            s = self.by_pair.get((namespace, k, v))
            if not s:
                return []
            if best is None or len(s) < len(best):
                best = s
        if best is None:
            return []
        if len(selector) == 1:
            return list(best)
        return [key for key in best if selector_matches(selector, self.labels[key][1])]


class SelectorIndex:
    """Services by (namespace, selector key, value), to find the Services selecting a pod."""

    def __init__(self) -> None:
        self.by_pair: dict[tuple[str, str, str], set[str]] = {}
        self.selectors: dict[str, tuple[str, dict]] = {}

    def set(self, key: str, namespace: str, selector: Mapping[str, str] | None) -> None:
        if not selector:
            self.remove(key)
            return
        selector = dict(selector)
        cur = self.selectors.get(key)
        if cur is not None:
            if cur[1] == selector:
                return
            self.remove(key)
        self.selectors[key] = (namespace, selector)
        for k, v in selector.items():
            self.by_pair.setdefault((namespace, k, v), set()).add(key)

    def remove(self, key: str) -> None:
        cur = self.selectors.pop(key, None)
        if cur is None:
            return
        ns, sel = cur
        for k, v in sel.items():
            s = self.by_pair.get((ns, k, v))
            if s is not None:
                s.discard(key)
                if not s:
                    del self.by_pair[(ns, k, v)]

    def services_for(self, namespace: str, labels: Mapping[str, str] | None) -> set[str]:
        """getServicesForPod: keys of the Services whose selector matches `labels`."""
        out: set[str] = set()
        if not labels:
            return out
        seen: set[str] = set()
        for k, v in labels.items():
            for key in self.by_pair.get((namespace, k, v), ()):
                if key in seen:
                    continue
                seen.add(key)
                if selector_matches(self.selectors[key][1], labels):
                    out.add(key)
        return out


def namespace_terminating(e: APIError) -> bool:
    """errors.HasStatusCause(err, NamespaceTerminatingCause)."""
    return any(c.get("reason") == "NamespaceTerminating"
               for c in (e.details or {}).get("causes") or ())


def obj_key(obj: dict) -> str:
    m = meta(obj)
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def split_key(key: str) -> tuple[str, str]:
    ns, _, name = key.partition("/")
    return ns, name


def rv_int(obj: dict | None) -> int:
    try:
        return int(meta(obj or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class SharedCaches:
    """Informers shared by the controllers that use one client, with label indexes kept by
    handlers registered before any controller's (so a controller's handler sees them current).

    `acquire(client)` / `release()` reference-count it; informers start on first use."""

    _registry: dict[int, "SharedCaches"] = {}

    def __init__(self, client) -> None:
        from svcnet.client import Informer

        self._Informer = Informer
        self.client = client
        self.refs = 0
        self.informers: dict[str, Any] = {}
        self._started: set[str] = set()
        self.pods = LabelIndex()
        self.services = SelectorIndex()
        # (namespace, service-name label) -> {slice name: slice}, any manager
        self.slices_by_service: dict[tuple[str, str], dict[str, dict]] = {}

    @classmethod
    def acquire(cls, client) -> "SharedCaches":
        c = cls._registry.get(id(client))
        if c is None or c.client is not client:
            c = cls._registry[id(client)] = cls(client)
        c.refs += 1
        return c

    async def release(self) -> None:
        self.refs -= 1
        if self.refs > 0:
            return
        if SharedCaches._registry.get(id(self.client)) is self:
            del SharedCaches._registry[id(self.client)]
        for inf in self.informers.values():
            await inf.stop()
        self.informers.clear()
        self._started.clear()

    def informer(self, kind: str):
        inf = self.informers.get(kind)
        if inf is not None:
            return inf
        inf = self._Informer(self.client, BY_KIND[kind])
        if kind == "Pod":
            inf.add_handler(self._index_pod)
        elif kind == "Service":
            inf.add_handler(self._index_service)
        elif kind == "EndpointSlice":
            inf.add_handler(self._index_slice)
        self.informers[kind] = inf
        return inf

    async def start(self, kinds: Iterable[str], timeout: float | None = None) -> None:
        infs = [self.informer(k) for k in kinds]
        for k, inf in zip(kinds, infs):
            if k not in self._started:
                self._started.add(k)
                inf.start()
        await asyncio.wait_for(asyncio.gather(*(inf.synced.wait() for inf in infs)), timeout)

    # -- index handlers --

    def _index_pod(self, kind: str, old: dict | None, new: dict | None) -> None:
        if kind == "DELETED":
            self.pods.remove(obj_key(old))
        else:
            self.pods.set(obj_key(new), meta(new).get("namespace", ""), meta(new).get("labels"))

    def _index_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        if kind == "DELETED":
            self.services.remove(obj_key(old))
        else:
            self.services.set(obj_key(new), meta(new).get("namespace", ""), service_selector(new))

    def _index_slice(self, kind: str, old: dict | None, new: dict | None) -> None:
        if old is not None:
            ok = (meta(old).get("namespace", ""), (meta(old).get("labels") or {}).get(LABEL_SERVICE_NAME))
            bucket = self.slices_by_service.get(ok)
            if bucket is not None:
                bucket.pop(meta(old).get("name", ""), None)
                if not bucket:
                    del self.slices_by_service[ok]
        if new is not None:
            svc = (meta(new).get("labels") or {}).get(LABEL_SERVICE_NAME)
            if svc:
                self.slices_by_service.setdefault((meta(new).get("namespace", ""), svc), {})[
                    meta(new).get("name", "")] = new

    # -- queries --

    def pods_for(self, namespace: str, selector: Mapping[str, str]) -> list[dict]:
        cache = self.informer("Pod").cache
        return [p for p in (cache.get(k) for k in self.pods.matching(namespace, selector))
                if p is not None]

    def services_for_pod_change(self, old: dict | None, new: dict | None) -> set[str]:
        """GetPodServiceMemberships / GetServicesToUpdateOnPodChange."""
        if old is None or new is None:
            p = new or old
            return self.services.services_for(meta(p).get("namespace", ""), meta(p).get("labels"))
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return set()
        pod_changed, labels_changed = pod_endpoints_changed(old, new)
        if not pod_changed and not labels_changed:
            return set()
        ns = meta(new).get("namespace", "")
        cur = self.services.services_for(ns, meta(new).get("labels"))
        if not labels_changed:
            return cur
        prev = self.services.services_for(ns, meta(old).get("labels"))
        return cur | prev if pod_changed else cur ^ prev


class _NodeView:
    """The Node informer cache as name -> Node."""

    def __init__(self, cache: dict) -> None:
        self._cache = cache

    def get(self, name: str, default=None):
        return self._cache.get(f"/{name}", default)


class _SyncError(Exception):
    """A sync that must be retried with the standard backoff."""


# =============================================================================================
# The controller
# =============================================================================================

class CacheController:
    """The lifecycle shared by the controllers that run on SharedCaches: attach handlers to the
    shared informers, start them, queue the initial work, run the workers; stop undoes it.
    Subclasses set KINDS, `client`, `workers`, `queue`, `_tasks`, `_handlers`, `caches` and give
    `_handler_table()`, `_initial_queue()` and `_worker()`."""

    KINDS: tuple[str, ...] = ()
    WHAT = "objects"  # for log lines: what the controller syncs per Service

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except APIError as e:
                if e.code == 409:
                    n = self._conflicts.get(key, 0)
                    self._conflicts[key] = n + 1
                    log.debug("conflict syncing %s for %s; retrying", self.WHAT, key)
                    self.queue.add_after(key, min(self.CONFLICT_BACKOFF * 2 ** n, 5.0))
                else:
                    self._retry(key, e)
            except Exception as e:  # noqa: BLE001 - any failure is retried with backoff
                self._retry(key, e)
            else:
                self.queue.forget(key)
                self._conflicts.pop(key, None)
            finally:
                self.queue.done(key)

    def _retry(self, key: str, err: Exception) -> None:
        if self.queue.num_requeues(key) < self.MAX_RETRIES:
            log.info("error syncing %s for service %s, retrying: %s", self.WHAT, key, err)
            self.queue.add_rate_limited(key)
        else:
            log.warning("retry budget exceeded, dropping service %s out of the queue: %s", key, err)
            self.queue.forget(key)

    def _handler_table(self) -> list[tuple[str, Callable]]:
        raise NotImplementedError

    def _initial_queue(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self.caches = SharedCaches.acquire(self.client)
        for kind, h in self._handler_table():
            inf = self.caches.informer(kind)
            inf.add_handler(h)
            self._handlers.append((inf, h))
        await self.caches.start(self.KINDS)
        self._initial_queue()
        for _ in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker()))

    async def stop(self) -> None:
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for inf, h in self._handlers:
            try:
                inf.handlers.remove(h)
            except ValueError:
                pass
        self._handlers.clear()
        if self.caches is not None:
            await self.caches.release()
            self.caches = None


class EndpointSliceController(CacheController):
    """Keeps the EndpointSlices of every Service with a selector in line with its pods."""

    WHAT = "endpoint slices"
    KINDS = ("Service", "Pod", "Node", "EndpointSlice")
    # queue a Service this long after a slice it did not expect changed (endpointSliceChangeMinSyncDelay)
    SLICE_CHANGE_DELAY = 1.0
    CONFLICT_BACKOFF = 0.05
    MAX_RETRIES = 15

    def __init__(self, client, max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
                 workers: int = 5, batch_period: float = 0.0,
                 controller_name: str = CONTROLLER_NAME):
        if not 1 <= max_endpoints_per_slice <= 1000:
            raise ValueError("max_endpoints_per_slice must be between 1 and 1000")
        self.client = client
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.workers = workers
        self.batch_period = batch_period
        self.controller_name = controller_name
        self.queue = WorkQueue(base_delay=1.0, max_delay=1000.0)
        self.trigger = TriggerTimeTracker()
        self.caches: SharedCaches | None = None
        self._tasks: list[asyncio.Task] = []
        self._handlers: list[tuple[Any, Callable]] = []
        # our writes not yet seen by the informer, per Service:
        # (namespace, service) -> {slice name: (rv, object or None if we deleted it, time)}
        self._overlay: dict[tuple[str, str], dict[str, tuple[int, dict | None, float]]] = {}
        # generation of each slice as we last wrote it (EndpointSliceTracker)
        self._expected: dict[str, int] = {}
        # node name -> Service keys that skipped a pod because the Node was missing
        self._waiting_for_node: dict[str, set[str]] = {}
        self._conflicts: dict[str, int] = {}
        self.syncs = 0
        self.last_sync_seconds = 0.0

    # ---- lifecycle ---------------------------------------------------------------------------

    def _handler_table(self) -> list[tuple[str, Callable]]:
        return [("Service", self._on_service), ("Pod", self._on_pod), ("Node", self._on_node),
                ("EndpointSlice", self._on_slice)]

    def _initial_queue(self) -> None:
        """Every Service, and every Service our slices name (orphans are removed by the sync)."""
        c = self.caches
        for key in list(c.informer("Service").cache):
            self.queue.add(key)
        for (ns, svc), bucket in list(c.slices_by_service.items()):
            if any(self._managed(s) for s in bucket.values()):
                self.queue.add(f"{ns}/{svc}")

    # ---- event handlers ------------------------------------------------------------------

    def _managed(self, s: dict | None) -> bool:
        return bool(s) and (meta(s).get("labels") or {}).get(LABEL_MANAGED_BY) == self.controller_name

    def _on_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        self.queue.add(obj_key(new or old))

    def _on_pod(self, kind: str, old: dict | None, new: dict | None) -> None:
        for key in self.caches.services_for_pod_change(old, new):
            self.queue.add_after(key, self.batch_period)

    def _on_node(self, kind: str, old: dict | None, new: dict | None) -> None:
        if kind == "ADDED" and self._waiting_for_node:
            for key in self._waiting_for_node.pop(meta(new).get("name", ""), ()):
                self.queue.add(key)

    def _on_slice(self, kind: str, old: dict | None, new: dict | None) -> None:
        s = new or old
        key = obj_key(s)
        svc_name = (meta(s).get("labels") or {}).get(LABEL_SERVICE_NAME)
        ns = meta(s).get("namespace", "")
        if self._overlay:
            self._prune_overlay(kind, old, new)
        if kind == "DELETED":
            expected = self._expected.pop(key, None)
            if self._managed(old) and expected != -1 and svc_name:
                # not a deletion of ours: sync the Service again
                self.queue.add_after(f"{ns}/{svc_name}", self.SLICE_CHANGE_DELAY)
            return
        if kind == "MODIFIED":
            prev_name = (meta(old).get("labels") or {}).get(LABEL_SERVICE_NAME)
            if prev_name != svc_name:
                for n in (svc_name, prev_name):
                    if n:
                        self.queue.add_after(f"{ns}/{n}", self.SLICE_CHANGE_DELAY)
                return
            if self._managed(old) != self._managed(new):
                if svc_name:
                    self.queue.add_after(f"{ns}/{svc_name}", self.SLICE_CHANGE_DELAY)
                return
        if self._managed(new) and svc_name and self._should_sync(key, new):
            self.queue.add_after(f"{ns}/{svc_name}", self.SLICE_CHANGE_DELAY)

    def _should_sync(self, key: str, s: dict) -> bool:
        g = self._expected.get(key)
        return g is None or self._generation(s) > g

    @staticmethod
    def _generation(s: dict) -> int:
        m = meta(s)
        g = m.get("generation")
        return int(g) if g is not None else rv_int(s)

    # ---- views -------------------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> dict | None:
        return self.caches.informer("Service").cache.get(f"{namespace}/{name}")

    def slices_for(self, namespace: str, name: str) -> list[dict]:
        """The slices this controller manages for the Service, our unseen writes included."""
        bucket = self.caches.slices_by_service.get((namespace, name)) or {}
        pending = self._overlay.get((namespace, name))
        if not pending:
            return [s for s in bucket.values() if self._managed(s)]
        out = dict(bucket)
        now = time.monotonic()
        for sname, (rv, obj, t) in list(pending.items()):
            cur = out.get(sname)
            if obj is None:  # deleted by us
                if cur is not None:
                    del out[sname]
                elif now - t > 60:  # the informer never saw it: forget the tombstone
                    del pending[sname]
            elif cur is None or rv_int(cur) < rv:
                out[sname] = obj
        if not pending:
            del self._overlay[(namespace, name)]
        return [s for s in out.values() if self._managed(s)]

    def _prune_overlay(self, kind: str, old: dict | None, new: dict | None) -> None:
        s = new or old
        svc_name = (meta(s).get("labels") or {}).get(LABEL_SERVICE_NAME)
        ok = (meta(s).get("namespace", ""), svc_name)
        pending = self._overlay.get(ok)
        if not pending:
            return
        sname = meta(s).get("name", "")
        ov = pending.get(sname)
        if ov is not None and (kind == "DELETED" or rv_int(new) >= ov[0]):
            del pending[sname]
            if not pending:
                del self._overlay[ok]

    # ---- the worker -------------------------------------------------------------------------

    async def sync(self, key: str) -> Plan:
        t0 = time.perf_counter()
        try:
            return await self._sync(key)
        finally:
            self.syncs += 1
            self.last_sync_seconds = time.perf_counter() - t0

    def plan_for(self, key: str) -> tuple[dict | None, Plan]:
        """The Service and what a sync of it would write, from the caches (no I/O)."""
        ns, name = split_key(key)
        svc = self.service(ns, name)
        existing = self.slices_for(ns, name)
        if svc is None:
            return None, Plan(delete=existing)
        sel = service_selector(svc)
        if sel is None or spec(svc).get("type") == "ExternalName":
            return svc, Plan(delete=existing)
        pods = self.caches.pods_for(ns, sel)
        trigger = self.trigger.compute(ns, svc, pods)
        nodes = _NodeView(self.caches.informer("Node").cache)
        plan = reconcile(svc, pods, nodes, existing, self.max_endpoints_per_slice, trigger,
                         self.controller_name)
        return svc, plan

    async def _sync(self, key: str) -> Plan:
        ns, name = split_key(key)
        svc, plan = self.plan_for(key)
        if svc is None:
            self.trigger.delete(ns, name)
        current = {meta(s)["name"]: s for s in self.slices_for(ns, name)}
        for s in plan.create:
            try:
                created = await self.client.create(SLICE, wire_slice(s), manager=FIELD_MANAGER)
            except APIError as e:
                if namespace_terminating(e):
                    return plan  # creates keep failing while the namespace goes: drop the key
                raise
            self._wrote(created)
        for s in plan.update:
            cur = current.get(meta(s)["name"])
            if cur is not None and slice_content_equal(s, cur):
                continue
            if cur is not None and not meta(s).get("resourceVersion"):
                s["metadata"]["resourceVersion"] = meta(cur).get("resourceVersion")
            updated = await self.client.update(SLICE, wire_slice(s), manager=FIELD_MANAGER)
            self._wrote(updated)
        for s in plan.delete:
            try:
                await self.client.delete(SLICE, ns, meta(s)["name"])
            except APIError as e:
                if e.code != 404:
                    raise
            self._deleted(s)
        if plan.missing_nodes:
            for n in plan.missing_nodes:
                self._waiting_for_node.setdefault(n, set()).add(key)
            raise _SyncError(f"skipping pods of Service {key}: Node(s) "
                             f"{', '.join(sorted(n or '<none>' for n in plan.missing_nodes))} not found")
        return plan

    def _overlay_key(self, s: dict) -> tuple[str, str]:
        return meta(s).get("namespace", ""), (meta(s).get("labels") or {}).get(LABEL_SERVICE_NAME, "")

    def _wrote(self, obj: dict) -> None:
        key = obj_key(obj)
        self._expected[key] = self._generation(obj)
        cached = self.caches.informer("EndpointSlice").cache.get(key)
        if cached is None or rv_int(cached) < rv_int(obj):
            self._overlay.setdefault(self._overlay_key(obj), {})[meta(obj)["name"]] = (
                rv_int(obj), obj, time.monotonic())

    def _deleted(self, s: dict) -> None:
        key = obj_key(s)
        self._expected[key] = -1  # deletion expected
        if key in self.caches.informer("EndpointSlice").cache or \
                meta(s)["name"] in self._overlay.get(self._overlay_key(s), {}):
            self._overlay.setdefault(self._overlay_key(s), {})[meta(s)["name"]] = (
                rv_int(s), None, time.monotonic())
