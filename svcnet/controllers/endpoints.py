"""The legacy Endpoints controller, as kube-controller-manager 1.32 runs it.

Theory of operation
-------------------
Like pkg/controller/endpoint, this controller derives each Service's Endpoints object directly
from the pods its selector matches (not from the EndpointSlices), with the rules of that
controller, which differ from the EndpointSlice controller's in places:

* Pods: terminal pods and pods without an IP are left out; terminating pods are left out too
  unless the Service has publishNotReadyAddresses. There is no Node lookup.
* Address: the pod IP of the Service's first IP family (spec.ipFamilies[0]; else the family of
  the ClusterIP; for a headless Service without families, the family of status.podIP), with
  `nodeName` (always set, as the real controller points it at pod.spec.nodeName),
  `targetRef` {kind: Pod, namespace, name, uid} and `hostname` when pod.spec.hostname is set and
  pod.spec.subdomain is the Service name.
* Each (address, resolved port) goes to `addresses` when the pod is Ready (or the Service has
  publishNotReadyAddresses), else to `notReadyAddresses`. A named targetPort is resolved per pod
  (FindPort); a pod whose port does not resolve gets no address for that port. A headless
  Service without ports gets subsets without ports.
* `repack_subsets` is endpoints.RepackSubsets: addresses are de-duplicated by (IP, pod UID),
  "not ready" wins over "ready" for an address seen both ways on one port, ports are grouped by
  identical address sets, and the result is sorted as SortSubsets sorts it: addresses by IP
  bytes then UID, ports and subsets by the MD5 of their go-spew `%#v` dump (`spew_port`,
  `spew_subset` reproduce that text), so the order is the one kube-controller-manager writes.
* More than 1000 addresses are truncated (ready ones first, proportionally over the subsets)
  and annotated `endpoints.kubernetes.io/over-capacity: truncated`.
* Labels are the Service's labels, plus `service.kubernetes.io/headless: ""` for a headless
  Service; `endpoints.kubernetes.io/last-change-trigger-time` is set as the EndpointSlice
  controller sets it (see TriggerTimeTracker there).
* Nothing is written when the subsets (ignoring targetRef.resourceVersion), the labels
  (ignoring the headless label) and the capacity annotation are already right.
* A deleted Service's Endpoints object is deleted. Services without a selector and ExternalName
  Services are left alone (their Endpoints, if any, belong to whoever wrote them). At start,
  every Endpoints object is queued, so ones left from Services deleted meanwhile go
  (leader-election records excepted).

It shares the Service and Pod informers and their indexes with the EndpointSlice controller
(`SharedCaches`), and uses the same work-queue discipline (deduplicated keys, 5 workers, the
default controller backoff of 5 ms doubling to 1000 s, 15 tries; 409 retried after a short
backoff); its own writes not yet seen by its Endpoints informer are remembered, so consecutive
syncs never act on a stale object.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from typing import Any, Callable, Iterable

from svcnet.api.errors import APIError
from svcnet.controllers.endpointslice import (
    ANNOTATION_TRIGGER_TIME, ENDPOINTS, FIELD_MANAGER, LABEL_HEADLESS, CacheController, SharedCaches,
    TriggerTimeTracker, WorkQueue, find_port, is_ipv6_string, is_pod_ready, is_service_ip_set,
    matching_pods, meta, namespace_terminating, obj_key, pod_ips, rv_int, service_selector,
    should_pod_be_in_endpoints, should_set_hostname, spec, split_key, status)

log = logging.getLogger("svcnet.controllers.endpoints")

MAX_CAPACITY = 1000
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"

# ---------------------------------------------------------------------------------------------
# go-spew %#v, for the hash-ordered sorts of SortSubsets
# ---------------------------------------------------------------------------------------------

_NIL = "<nil>"


def _spew_port_body(p: dict) -> str:
    ap = p.get("appProtocol")
    return (f"{{Name:(string){p.get('name') or ''} Port:(int32){int(p.get('port') or 0)} "
            f"Protocol:(v1.Protocol){p.get('protocol') or ''} "
            f"AppProtocol:(*string){_NIL if ap is None else ap}}}")


def spew_port(p: dict) -> str:
    """dump.ForHash(v1.EndpointPort{...})."""
    return "(v1.EndpointPort)" + _spew_port_body(p)


def _spew_address(a: dict) -> str:
    nn = a.get("nodeName")
    tr = a.get("targetRef")
    if tr is None:
        ref = "(*v1.ObjectReference)" + _NIL
    else:
        ref = ("(*v1.ObjectReference){"
               f"Kind:(string){tr.get('kind') or ''} Namespace:(string){tr.get('namespace') or ''} "
               f"Name:(string){tr.get('name') or ''} UID:(types.UID){tr.get('uid') or ''} "
               f"APIVersion:(string){tr.get('apiVersion') or ''} "
               f"ResourceVersion:(string){tr.get('resourceVersion') or ''} "
               f"FieldPath:(string){tr.get('fieldPath') or ''}}}")
    return (f"{{IP:(string){a.get('ip') or ''} Hostname:(string){a.get('hostname') or ''} "
            f"NodeName:(*string){_NIL if nn is None else nn} TargetRef:{ref}}}")


def _spew_list(typ: str, items: list | None, fmt: Callable[[Any], str]) -> str:
    if items is None:
        return f"({typ}){_NIL}"
    return f"({typ})[" + " ".join(fmt(x) for x in items) + "]"


def spew_subset(ss: dict) -> str:
    """dump.ForHash(v1.EndpointSubset{...}); a None list is a nil slice."""
    return ("(v1.EndpointSubset){"
            f"Addresses:{_spew_list('[]v1.EndpointAddress', ss.get('addresses'), _spew_address)} "
            f"NotReadyAddresses:{_spew_list('[]v1.EndpointAddress', ss.get('notReadyAddresses'), _spew_address)} "
            f"Ports:{_spew_list('[]v1.EndpointPort', ss.get('ports'), _spew_port_body)}}}")


def _md5(s: str) -> bytes:
    return hashlib.md5(s.encode(), usedforsecurity=False).digest()


# ---------------------------------------------------------------------------------------------
# Pure core
# ---------------------------------------------------------------------------------------------

def _address_key(a: dict) -> tuple[str, str]:
    return a.get("ip") or "", ((a.get("targetRef") or {}).get("uid") or "")


def _address_sort_key(a: dict) -> tuple:
    """LessEndpointAddress: IP bytes, then no targetRef before a targetRef, then UID."""
    tr = a.get("targetRef")
    return ((a.get("ip") or "").encode(), tr is not None, (tr or {}).get("uid") or "")


def _port_tuple(p: dict) -> tuple:
    return (p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "",
            p.get("appProtocol"))


_SENTINEL = ("", -1, "", None)


def repack_subsets(subsets: list[dict]) -> list[dict]:
    """endpoints.RepackSubsets (release-1.32) including SortSubsets."""
    all_addrs: dict[tuple, dict] = {}
    port_map: dict[tuple, dict[tuple, bool]] = {}
    port_obj: dict[tuple, dict] = {}
    for ss in subsets:
        ports = ss.get("ports") or []
        keys = [_port_tuple(p) for p in ports] or [_SENTINEL]
        for p, pk in zip(ports or [None], keys):
            if p is not None:
                port_obj.setdefault(pk, p)
            ready_map = port_map.setdefault(pk, {})
            for ready, addrs in ((True, ss.get("addresses") or ()),
                                 (False, ss.get("notReadyAddresses") or ())):
                for a in addrs:
                    ak = _address_key(a)
                    all_addrs.setdefault(ak, a)
                    if ready_map.get(ak, True):
                        ready_map[ak] = ready
    groups: dict[tuple, list[dict] | None] = {}
    group_addrs: dict[tuple, dict[tuple, bool]] = {}
    for pk, addrs in port_map.items():
        gk = tuple(sorted(addrs.items()))
        group_addrs[gk] = addrs
        if pk[1] > 0:
            cur = groups.get(gk)
            groups[gk] = (cur or []) + [port_obj[pk]]
        elif gk not in groups:
            groups[gk] = None
    final = []
    for gk, ports in groups.items():
        addrs = group_addrs[gk]
        ready = [all_addrs[k] for k, r in addrs.items() if r] or None
        not_ready = [all_addrs[k] for k, r in addrs.items() if not r] or None
        final.append({"addresses": ready, "notReadyAddresses": not_ready, "ports": ports})
    return sort_subsets(final)


def sort_subsets(subsets: list[dict]) -> list[dict]:
    for ss in subsets:
        for f in ("addresses", "notReadyAddresses"):
            if ss.get(f):
                ss[f] = sorted(ss[f], key=_address_sort_key)
        if ss.get("ports"):
            ss["ports"] = sorted(ss["ports"], key=lambda p: _md5(spew_port(p)))
    subsets.sort(key=lambda ss: _md5(spew_subset(ss)))
    return subsets


def pod_to_endpoint_address(svc: dict, pod: dict) -> dict | None:
    """podToEndpointAddressForService: None when the pod has no IP of the Service's family."""
    families = spec(svc).get("ipFamilies") or []
    if families:
        want_v6 = families[0] == "IPv6"
    elif is_service_ip_set(svc):
        want_v6 = is_ipv6_string(spec(svc)["clusterIP"])
    else:
        want_v6 = is_ipv6_string(status(pod).get("podIP") or "")
    ip = next((i for i in pod_ips(pod) if is_ipv6_string(i) == want_v6), None)
    if ip is None:
        return None
    m = meta(pod)
    addr: dict[str, Any] = {"ip": ip}
    if should_set_hostname(pod, svc):
        addr["hostname"] = spec(pod)["hostname"]
    addr["nodeName"] = spec(pod).get("nodeName") or ""
    addr["targetRef"] = {"kind": "Pod", "namespace": m.get("namespace", ""),
                         "name": m.get("name", ""), "uid": m.get("uid", "")}
    return addr


def compute_subsets(svc: dict, pods: Iterable[dict]) -> tuple[list[dict], int, int]:
    """The repacked subsets for `svc` and the numbers of ready and not-ready entries."""
    publish = bool(spec(svc).get("publishNotReadyAddresses"))
    svc_ports = spec(svc).get("ports") or []
    subsets: list[dict] = []
    n_ready = n_not_ready = 0

    def add(addr: dict, port: dict | None, pod: dict) -> None:
        nonlocal n_ready, n_not_ready
        ports = [port] if port is not None else []
        if publish or is_pod_ready(pod):
            subsets.append({"addresses": [addr], "ports": ports})
            n_ready += 1
        else:
            subsets.append({"notReadyAddresses": [addr], "ports": ports})
            n_not_ready += 1

    for pod in matching_pods(svc, pods):
        if not should_pod_be_in_endpoints(pod, publish):
            continue
        addr = pod_to_endpoint_address(svc, pod)
        if addr is None:
            continue
        if not svc_ports:
            if spec(svc).get("clusterIP") == "None":
                add(addr, None, pod)
            continue
        for sp in svc_ports:
            num = find_port(pod, sp)
            if num is None:
                continue
            p = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("appProtocol") is not None:
                p["appProtocol"] = sp["appProtocol"]
            add(addr, p, pod)
    return repack_subsets(subsets), n_ready, n_not_ready


def truncate_endpoints(subsets: list[dict]) -> bool:
    """truncateEndpoints: keep at most 1000 addresses, ready ones first. True if truncated."""
    total_ready = sum(len(ss.get("addresses") or ()) for ss in subsets)
    total_not_ready = sum(len(ss.get("notReadyAddresses") or ()) for ss in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    if truncate_ready:
        max_, num_total = MAX_CAPACITY, total_ready
    else:
        max_, num_total = MAX_CAPACITY - total_ready, total_not_ready
    can_be_added = max_
    for ss in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        in_subset = len(ss.get(field) or ())
        to_add = int(math.ceil(in_subset / num_total * max_)) if num_total else 0
        to_add = min(to_add, can_be_added)
        if truncate_ready:
            ss["addresses"] = (ss.get("addresses") or [])[:to_add] or None
            ss["notReadyAddresses"] = None
            can_be_added -= len(ss["addresses"] or ())
        else:
            ss["notReadyAddresses"] = (ss.get("notReadyAddresses") or [])[:to_add] or None
            can_be_added -= len(ss["notReadyAddresses"] or ())
    return True


def _norm_address(a: dict) -> tuple:
    tr = a.get("targetRef")
    ref = None if tr is None else tuple(sorted(
        (k, v) for k, v in tr.items() if k != "resourceVersion" and v not in ("", None)))
    return (a.get("ip") or "", a.get("hostname") or "", a.get("nodeName") or "", ref)


def normalize_subsets(subsets: list[dict] | None) -> list[tuple]:
    """A comparable form: nil and empty lists alike, targetRef without resourceVersion, the API
    server's defaults (port protocol TCP) applied."""
    out = []
    for ss in subsets or ():
        out.append((tuple(_norm_address(a) for a in ss.get("addresses") or ()),
                    tuple(_norm_address(a) for a in ss.get("notReadyAddresses") or ()),
                    tuple((p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP",
                           p.get("appProtocol")) for p in ss.get("ports") or ())))
    return out


def subsets_to_json(subsets: list[dict]) -> list[dict]:
    """Drop nil lists, as the API's omitempty does."""
    out = []
    for ss in subsets:
        o = {}
        for f in ("addresses", "notReadyAddresses", "ports"):
            if ss.get(f):
                o[f] = ss[f]
        out.append(o)
    return out


def desired_endpoints(svc: dict, pods: Iterable[dict], current: dict | None,
                      trigger_time: str | None = None) -> dict | None:
    """The Endpoints object to write for `svc`, or None when `current` is already right."""
    subsets, _, _ = compute_subsets(svc, pods)
    svc_labels = dict(meta(svc).get("labels") or {})
    if current is not None:
        cur_labels = dict(meta(current).get("labels") or {})
        cur_labels.pop(LABEL_HEADLESS, None)
        n_cur = sum(len(ss.get("addresses") or ()) + len(ss.get("notReadyAddresses") or ())
                    for ss in current.get("subsets") or ())
        capacity_ok = n_cur <= MAX_CAPACITY and \
            ANNOTATION_OVER_CAPACITY not in (meta(current).get("annotations") or {})
        if normalize_subsets(current.get("subsets")) == normalize_subsets(subsets) and \
                cur_labels == svc_labels and capacity_ok:
            return None
        new = dict(current)
        new["metadata"] = dict(meta(current))
    else:
        m = meta(svc)
        new = {"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": m.get("name", ""), "namespace": m.get("namespace", "")}}
    nm = new["metadata"]
    ann = dict(nm.get("annotations") or {})
    if trigger_time:
        ann[ANNOTATION_TRIGGER_TIME] = trigger_time
    else:
        ann.pop(ANNOTATION_TRIGGER_TIME, None)
    if truncate_endpoints(subsets):
        ann[ANNOTATION_OVER_CAPACITY] = "truncated"
    else:
        ann.pop(ANNOTATION_OVER_CAPACITY, None)
    nm["annotations"] = ann
    labels = svc_labels
    if not is_service_ip_set(svc):
        labels[LABEL_HEADLESS] = ""
    else:
        labels.pop(LABEL_HEADLESS, None)
    nm["labels"] = labels
    new["subsets"] = subsets_to_json(subsets)
    if not new["subsets"]:
        del new["subsets"]  # omitempty
    return new


# ---------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------

class EndpointsController(CacheController):
    """Keeps the Endpoints object of every Service with a selector in line with its pods."""

    WHAT = "endpoints"
    KINDS = ("Service", "Pod", "Endpoints")
    CONFLICT_BACKOFF = 0.05
    MAX_RETRIES = 15

    def __init__(self, client, workers: int = 5, batch_period: float = 0.0):
        self.client = client
        self.workers = workers
        self.batch_period = batch_period
        self.queue = WorkQueue(base_delay=0.005, max_delay=1000.0)
        self.trigger = TriggerTimeTracker()
        self.caches: SharedCaches | None = None
        self._tasks: list[asyncio.Task] = []
        self._handlers: list[tuple[Any, Callable]] = []
        # our writes not yet seen by the informer: key -> (rv, object or None if deleted, time)
        self._overlay: dict[str, tuple[int, dict | None, float]] = {}
        self._conflicts: dict[str, int] = {}
        self.syncs = 0

    def _handler_table(self) -> list[tuple[str, Callable]]:
        return [("Service", self._on_service), ("Pod", self._on_pod),
                ("Endpoints", self._on_endpoints)]

    def _initial_queue(self) -> None:
        c = self.caches
        for key in list(c.informer("Service").cache):
            self.queue.add(key)
        # checkLeftoverEndpoints
        for key, ep in list(c.informer("Endpoints").cache.items()):
            if LEADER_ANNOTATION not in (meta(ep).get("annotations") or {}):
                self.queue.add(key)

    # ---- handlers ---------------------------------------------------------------------------

    def _on_service(self, kind: str, old: dict | None, new: dict | None) -> None:
        self.queue.add(obj_key(new or old))

    def _on_pod(self, kind: str, old: dict | None, new: dict | None) -> None:
        for key in self.caches.services_for_pod_change(old, new):
            self.queue.add_after(key, self.batch_period)

    def _on_endpoints(self, kind: str, old: dict | None, new: dict | None) -> None:
        key = obj_key(new or old)
        ov = self._overlay.get(key)
        if ov is not None and (kind == "DELETED" or rv_int(new) >= ov[0]):
            del self._overlay[key]
        if kind == "DELETED":
            self.queue.add(key)

    # ---- sync -------------------------------------------------------------------------------

    def current(self, namespace: str, name: str) -> dict | None:
        key = f"{namespace}/{name}"
        cached = self.caches.informer("Endpoints").cache.get(key)
        ov = self._overlay.get(key)
        if ov is None:
            return cached
        rv, obj, t = ov
        if obj is None:
            if cached is None and time.monotonic() - t > 60:
                del self._overlay[key]
            return cached if cached is not None and rv_int(cached) > rv else None
        return obj if cached is None or rv_int(cached) < rv else cached

    async def sync(self, key: str) -> dict | None:
        """Sync one Service; returns what was written (None if nothing)."""
        self.syncs += 1
        ns, name = split_key(key)
        svc = self.caches.informer("Service").cache.get(key)
        if svc is None:
            cur = self.current(ns, name)
            self.trigger.delete(ns, name)
            ov = self._overlay.get(key)
            if cur is None and ov is not None and ov[1] is None:
                return None  # we deleted it already; the informer has not caught up
            try:
                await self.client.delete(ENDPOINTS, ns, name)
            except APIError as e:
                if e.code != 404:
                    raise
                return None
            self._overlay[key] = (rv_int(cur), None, time.monotonic())
            return None
        sel = service_selector(svc)
        if sel is None or spec(svc).get("type") == "ExternalName":
            return None
        pods = self.caches.pods_for(ns, sel)
        trigger = self.trigger.compute(ns, svc, pods)
        current = self.current(ns, name)
        new = desired_endpoints(svc, pods, current, trigger)
        if new is None:
            return None
        if current is None:
            try:
                written = await self.client.create(ENDPOINTS, new, manager=FIELD_MANAGER)
            except APIError as e:
                if namespace_terminating(e):
                    return None
                raise
        else:
            written = await self.client.update(ENDPOINTS, new, manager=FIELD_MANAGER)
        self._overlay[key] = (rv_int(written), written, time.monotonic())
        return written
