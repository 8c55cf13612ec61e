"""The ReplicaSet controller, as kube-controller-manager 1.32 runs it (pkg/controller/replicaset).

Theory of operation
-------------------
A ReplicaSet keeps `spec.replicas` pods that match its selector, created from its template and
owned by it (an ownerReference with controller=true and blockOwnerDeletion=true, so foreground
deletion of the ReplicaSet waits for them). One sync of one ReplicaSet:

1. Active pods (not Succeeded/Failed, no deletionTimestamp) in its namespace are *claimed*
   (ControllerRefManager.ClaimPods): a pod it controls that still matches stays; one that no
   longer matches is released (ownerReference removed); a matching orphan is adopted (if the
   ReplicaSet is not being deleted); pods controlled by anything else are never touched.
2. If its expectations are satisfied (see below), `manage_replicas` compares the claimed pods
   with `spec.replicas`: too few -> create the difference (at most `BURST_REPLICAS`) in slow-start
   batches of 1, 2, 4, ... stopping at the first batch with a failure; too many -> delete the
   difference, chosen by `rank_pods_for_deletion` (unscheduled < scheduled, Pending < Unknown <
   Running, not ready < ready, lower pod-deletion-cost, more related pods on the same node, ready
   for less time, more restarts, newer; ages compared on a log2 scale as LogarithmicScaleDown).
3. `calculate_status` counts replicas, fullyLabeledReplicas (pods with all the template's
   labels), readyReplicas and availableReplicas (Ready for at least minReadySeconds), sets
   observedGeneration, and a ReplicaFailure condition (FailedCreate / FailedDelete) while a
   create or delete fails; the status is written only when it changed. When pods are ready but
   not yet available the ReplicaSet is re-queued after minReadySeconds.

Expectations (ControllerExpectations): after asking for N creates or deletes the controller does
not manage that ReplicaSet again until its informer has seen them (or five minutes passed), so a
slow watch can never make it create twice. Creates that were skipped or failed are forgotten at
once.

The pure core is `claim_pods`, `manage_replicas`, `rank_pods_for_deletion`, `calculate_status`
and `new_pod`: objects in, decisions out. `ReplicaSetController` is the thin shell: shared
informers (ReplicaSets, Pods), a work queue, the API writes and the Events Kubernetes records
(SuccessfulCreate, FailedCreate, SuccessfulDelete on the ReplicaSet).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.controllers.endpointslice import (CacheController, WorkQueue, meta, namespace_terminating,
                                              obj_key)
from svcnet.events import event
from svcnet.registry.workloads import selector_matches

log = logging.getLogger("svcnet.controllers.replicaset")

POD, REPLICASET, EVENT = BY_KIND["Pod"], BY_KIND["ReplicaSet"], BY_KIND["Event"]
SMP = "application/strategic-merge-patch+json"
BURST_REPLICAS = 500            # --replicaset burstReplicas
SLOW_START_INITIAL_BATCH = 1    # controller.SlowStartInitialBatchSize
EXPECTATIONS_TIMEOUT = 300.0    # ExpectationsTimeout
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
COMPONENT = "replicaset-controller"
FIELD_MANAGER = "kube-controller-manager"


# =============================================================================================
# Small helpers (shared with the Deployment controller)
# =============================================================================================

def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def fmt_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def controller_ref(obj: dict) -> dict | None:
    """metav1.GetControllerOf: the ownerReference with controller=true."""
    for r in meta(obj).get("ownerReferences") or ():
        if r.get("controller") is True:
            return r
    return None


def new_controller_ref(owner: dict) -> dict:
    """metav1.NewControllerRef."""
    return {"apiVersion": owner.get("apiVersion", "apps/v1"), "kind": owner["kind"],
            "name": meta(owner)["name"], "uid": meta(owner)["uid"],
            "controller": True, "blockOwnerDeletion": True}


def adopt_patch(owner: dict, dependent: dict) -> dict:
    """ownerRefControllerPatch: a strategic merge patch adding the controller reference, with
    the dependent's uid as precondition."""
    return {"metadata": {"ownerReferences": [new_controller_ref(owner)],
                         "uid": meta(dependent)["uid"]}}


def release_patch(owner: dict, dependent: dict) -> dict:
    """GenerateDeleteOwnerRefStrategicMergeBytes."""
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": meta(owner)["uid"]}],
                         "uid": meta(dependent)["uid"]}}


def replicas(obj: dict) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def is_pod_active(pod: dict) -> bool:
    """controller.IsPodActive."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta(pod).get("deletionTimestamp")


def ready_condition(pod: dict) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    c = ready_condition(pod)
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: dict, min_ready_seconds: int, now: datetime) -> bool:
    """podutil.IsPodAvailable: Ready, and for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    t = parse_time(ready_condition(pod).get("lastTransitionTime"))
    return t is not None and (now - t).total_seconds() > min_ready_seconds


async def record_event(client, obj: dict, etype: str, reason: str, message: str,
                       component: str) -> None:
    """Best effort, as the event broadcaster: a failed Event never fails a sync."""
    try:
        await client.create(EVENT, event(obj, etype, reason, message, component))
    except (APIError, OSError) as e:
        log.debug("event %s for %s not recorded: %s", reason, meta(obj).get("name"), e)
    except Exception as e:  # noqa: BLE001 - an Event is never worth a failed sync
        log.debug("event %s not recorded: %s", reason, e)


# =============================================================================================
# Pure core
# =============================================================================================

@dataclass
class Claim:
    """ClaimPods' outcome: the pods the owner keeps (after adoption), what to adopt, release."""
    owned: list[dict] = field(default_factory=list)
    adopt: list[dict] = field(default_factory=list)
    release: list[dict] = field(default_factory=list)


def claim_objects(owner: dict, candidates: Iterable[dict], selector: dict | None,
                  extra_filter: Callable[[dict], bool] = lambda o: True) -> Claim:
    """ControllerRefManager.ClaimObject for every candidate (same namespace as the owner).

    Owned and matching: kept. Owned and no longer matching: released (unless the owner is
    being deleted, then kept out but untouched). Orphan and matching: adopted, unless the
    owner or the orphan is being deleted. Controlled by another owner: ignored."""
    out = Claim()
    uid = meta(owner).get("uid")
    deleting = bool(meta(owner).get("deletionTimestamp"))
    for obj in candidates:
        ref = controller_ref(obj)
        matches = selector_matches(selector, meta(obj).get("labels")) and extra_filter(obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                out.owned.append(obj)
            elif not deleting:
                out.release.append(obj)
            continue
        if deleting or not matches or meta(obj).get("deletionTimestamp"):
            continue
        out.adopt.append(obj)
        out.owned.append(obj)
    return out


def claim_pods(rs: dict, pods: Iterable[dict]) -> Claim:
    return claim_objects(rs, pods, (rs.get("spec") or {}).get("selector"))


async def can_adopt(client, res, owner: dict) -> bool:
    """RecheckDeletionTimestamp: a fresh read, so that a deleted or replaced owner adopts nothing."""
    try:
        fresh = await client.get(res, meta(owner)["namespace"], meta(owner)["name"])
    except APIError as e:
        if e.code == 404:
            return False
        raise
    return meta(fresh).get("uid") == meta(owner).get("uid") and not meta(fresh).get("deletionTimestamp")


async def adopt_and_release(client, owner_res, owner: dict, claim: Claim, dependent_res=None) -> list[dict]:
    """Carry out a Claim with strategic merge patches; returns the owned objects as they are now.
    A dependent that is gone or changed meanwhile (404, 409, 422) is skipped: the next sync sees it."""
    dependent_res = dependent_res or POD
    owned = [o for o in claim.owned if not any(o is a for a in claim.adopt)]
    if claim.adopt and await can_adopt(client, owner_res, owner):
        for o in claim.adopt:
            try:
                owned.append(await client.patch(dependent_res, meta(o)["namespace"], meta(o)["name"],
                                                adopt_patch(owner, o), patch_type=SMP, manager=FIELD_MANAGER))
            except APIError as e:
                if e.code not in (404, 409, 422):
                    raise
    for o in claim.release:
        try:
            await client.patch(dependent_res, meta(o)["namespace"], meta(o)["name"],
                               release_patch(owner, o), patch_type=SMP, manager=FIELD_MANAGER)
        except APIError as e:
            if e.code not in (404, 409, 422):
                raise
    return owned


def new_pod(rs: dict) -> dict:
    """controller.GetPodFromTemplate: the template's labels, annotations, finalizers and spec,
    generateName `<rs>-`, and the ReplicaSet as controller."""
    tmpl = (rs.get("spec") or {}).get("template") or {}
    tm = tmpl.get("metadata") or {}
    m: dict[str, Any] = {"generateName": f"{meta(rs)['name']}-",
                         "namespace": meta(rs).get("namespace", ""),
                         "ownerReferences": [new_controller_ref(rs)]}
    for k in ("labels", "annotations", "finalizers"):
        if tm.get(k):
            m[k] = copy.deepcopy(tm[k])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": m,
            "spec": copy.deepcopy(tmpl.get("spec") or {})}


def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """The batch sizes slowStartBatch uses for `count` calls: 1, 2, 4, ... (the last cut)."""
    out, remaining, size = [], count, min(count, initial)
    while size > 0:
        out.append(size)
        remaining -= size
        size = min(2 * size, remaining)
    return out


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _ready_time(pod: dict) -> datetime | None:
    c = ready_condition(pod)
    return parse_time(c.get("lastTransitionTime")) if c else None


def _max_restarts(pod: dict) -> int:
    return max((c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or ()),
               default=0)


def _deletion_cost(pod: dict) -> int:
    try:
        return int((meta(pod).get("annotations") or {}).get(DELETION_COST, "0"))
    except ValueError:
        return 0


def _log_rank(t: datetime, now: datetime) -> int:
    d = (now - t).total_seconds() * 1e9
    return int(math.log2(d)) if d > 0 else -1


def _after_or_zero(t1: datetime | None, t2: datetime | None) -> bool:
    if t1 is None or t2 is None:
        return t1 is None
    return t1 > t2


def _compare_times(t1, t2, now, uid1: str, uid2: str) -> bool | None:
    """Younger (or empty) first; ages in the same log2 bucket fall back to the uid."""
    if t1 == t2:
        return None
    if now is None or t1 is None or t2 is None:
        return _after_or_zero(t1, t2)
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return uid1 < uid2
    return diff < 0


def _pod_less(a: tuple[dict, int], b: tuple[dict, int], now: datetime | None) -> bool:
    """ActivePodsWithRanks.Less: does pod a go before pod b when scaling down?"""
    (p1, r1), (p2, r2) = a, b
    n1, n2 = (p1.get("spec") or {}).get("nodeName"), (p2.get("spec") or {}).get("nodeName")
    if bool(n1) != bool(n2):
        return not n1
    ph1 = _PHASE_ORDINAL.get((p1.get("status") or {}).get("phase"), 0)
    ph2 = _PHASE_ORDINAL.get((p2.get("status") or {}).get("phase"), 0)
    if ph1 != ph2:
        return ph1 < ph2
    if is_pod_ready(p1) != is_pod_ready(p2):
        return not is_pod_ready(p1)
    c1, c2 = _deletion_cost(p1), _deletion_cost(p2)
    if c1 != c2:
        return c1 < c2
    if r1 != r2:
        return r1 > r2
    u1, u2 = meta(p1).get("uid", ""), meta(p2).get("uid", "")
    if is_pod_ready(p1) and is_pod_ready(p2):
        res = _compare_times(_ready_time(p1), _ready_time(p2), now, u1, u2)
        if res is not None:
            return res
    m1, m2 = _max_restarts(p1), _max_restarts(p2)
    if m1 != m2:
        return m1 > m2
    res = _compare_times(parse_time(meta(p1).get("creationTimestamp")),
                         parse_time(meta(p2).get("creationTimestamp")), now, u1, u2)
    return bool(res)


def rank_pods_for_deletion(pods: list[dict], related: Iterable[dict], diff: int,
                           now: datetime | None = None) -> list[dict]:
    """getPodsToDelete: the `diff` pods to delete first. The rank of a pod is how many related
    active pods (of the same owner's ReplicaSets) share its node."""
    if diff >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for p in related:
        n = (p.get("spec") or {}).get("nodeName")
        if n and is_pod_active(p):
            on_node[n] = on_node.get(n, 0) + 1
    ranked = [(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)
               if (p.get("spec") or {}).get("nodeName") else 0) for p in pods]

    def cmp(a, b) -> int:
        if _pod_less(a, b, now):
            return -1
        if _pod_less(b, a, now):
            return 1
        return 0
    ranked.sort(key=functools.cmp_to_key(cmp))
    return [p for p, _ in ranked[:diff]]


@dataclass
class Manage:
    """manageReplicas' decision: how many pods to create, which to delete."""
    create: int = 0
    delete: list[dict] = field(default_factory=list)


def manage_replicas(rs: dict, pods: list[dict], related: Iterable[dict] = (),
                    now: datetime | None = None, burst: int = BURST_REPLICAS) -> Manage:
    diff = len(pods) - replicas(rs)
    if diff < 0:
        return Manage(create=min(-diff, burst))
    if diff > 0:
        return Manage(delete=rank_pods_for_deletion(pods, related, min(diff, burst), now))
    return Manage()


def _condition(status: dict, ctype: str) -> dict | None:
    for c in status.get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return None


def calculate_status(rs: dict, pods: list[dict], manage_error: str | None, now: datetime) -> dict:
    """calculateStatus + the observedGeneration updateReplicaSetStatus sets."""
    status = copy.deepcopy(rs.get("status") or {})
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    mrs = int(spec.get("minReadySeconds") or 0)
    fully = ready = available = 0
    for p in pods:
        labels = meta(p).get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully += 1
        if is_pod_ready(p):
            ready += 1
            if is_pod_available(p, mrs, now):
                available += 1
    failure = _condition(status, "ReplicaFailure")
    if manage_error is not None and failure is None:
        diff = len(pods) - replicas(rs)
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        status.setdefault("conditions", []).append(
            {"type": "ReplicaFailure", "status": "True", "lastTransitionTime": fmt_time(now),
             "reason": reason, "message": manage_error})
    elif manage_error is None and failure is not None:
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != "ReplicaFailure"]
        if not status["conditions"]:
            del status["conditions"]
    status["replicas"] = len(pods)
    status["fullyLabeledReplicas"] = fully
    status["readyReplicas"] = ready
    status["availableReplicas"] = available
    status["observedGeneration"] = meta(rs).get("generation", 0)
    # The API omits zero values (omitempty), as a real ReplicaSet's status does.
    for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        if not status[k]:
            del status[k]
    return status


# =============================================================================================
# Expectations
# =============================================================================================

class Expectations:
    """ControllerExpectations: outstanding creates / deletes per owner key, with a TTL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = EXPECTATIONS_TIMEOUT):
        self.clock = clock
        self.ttl = ttl
        self._e: dict[str, list] = {}  # key -> [adds, delete pod keys(set), timestamp]

    def satisfied(self, key: str) -> bool:
        e = self._e.get(key)
        if e is None:
            return True
        if e[0] <= 0 and not e[1]:
            return True
        return self.clock() - e[2] > self.ttl

    def expect_creations(self, key: str, n: int) -> None:
        self._e[key] = [n, set(), self.clock()]

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        self._e[key] = [0, set(pod_keys), self.clock()]

    def creation_observed(self, key: str) -> None:
        e = self._e.get(key)
        if e is not None:
            e[0] -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._e.get(key)
        if e is not None:
            e[1].discard(pod_key)

    def delete(self, key: str) -> None:
        self._e.pop(key, None)


# =============================================================================================
# The controller
# =============================================================================================

class ReplicaSetController(CacheController):
    """Keeps every ReplicaSet's pods at `spec.replicas`."""

    WHAT = "replica set"
    KINDS = ("ReplicaSet", "Pod")
    CONFLICT_BACKOFF = 0.05
    MAX_RETRIES = 15

    def __init__(self, client, workers: int = 5, burst: int = BURST_REPLICAS):
        self.client = client
        self.workers = workers
        self.burst = burst
        self.queue = WorkQueue(base_delay=0.005, max_delay=1000.0)
        self.expectations = Expectations()
        self.caches = None
        self._tasks: list[asyncio.Task] = []
        self._handlers: list[tuple[Any, Callable]] = []
        self._conflicts: dict[str, int] = {}
        # ReplicaSet uid -> keys of the pods it controls (for releases and related pods)
        self._owned: dict[str, set[str]] = {}
        self.syncs = 0

    def _handler_table(self) -> list[tuple[str, Callable]]:
        return [("ReplicaSet", self._on_rs), ("Pod", self._on_pod)]

    def _initial_queue(self) -> None:
        for key in list(self.caches.informer("ReplicaSet").cache):
            self.queue.add(key)

    # ---- handlers ---------------------------------------------------------------------------

    def _on_rs(self, kind: str, old: dict | None, new: dict | None) -> None:
        key = obj_key(new or old)
        if kind == "DELETED":
            self.expectations.delete(key)
        self.queue.add(key)

    def _rs_for_ref(self, namespace: str, ref: dict | None) -> str | None:
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        rs = self.caches.informer("ReplicaSet").cache.get(f"{namespace}/{ref.get('name')}")
        if rs is None or meta(rs).get("uid") != ref.get("uid"):
            return None
        return obj_key(rs)

    def _matching_rs(self, pod: dict) -> list[str]:
        """getPodReplicaSets: ReplicaSets in the pod's namespace whose selector matches it."""
        ns, labels = meta(pod).get("namespace", ""), meta(pod).get("labels")
        return [k for k, rs in list(self.caches.informer("ReplicaSet").cache.items())
                if meta(rs).get("namespace") == ns
                and selector_matches((rs.get("spec") or {}).get("selector"), labels)]

    def _index_owner(self, old: dict | None, new: dict | None) -> None:
        if old is not None:
            r = controller_ref(old)
            if r is not None:
                s = self._owned.get(r.get("uid"))
                if s is not None:
                    s.discard(obj_key(old))
                    if not s:
                        del self._owned[r.get("uid")]
        if new is not None:
            r = controller_ref(new)
            if r is not None:
                self._owned.setdefault(r.get("uid"), set()).add(obj_key(new))

    def _on_pod(self, kind: str, old: dict | None, new: dict | None) -> None:
        self._index_owner(old, new)
        pod = new or old
        ns = meta(pod).get("namespace", "")
        ref = controller_ref(pod)
        key = self._rs_for_ref(ns, ref)
        if kind == "ADDED":
            if meta(pod).get("deletionTimestamp"):
                if key:
                    self.expectations.deletion_observed(key, obj_key(pod))
                    self.queue.add(key)
                return
            if key:
                self.expectations.creation_observed(key)
                self.queue.add(key)
            elif ref is None:
                for k in self._matching_rs(pod):
                    self.queue.add(k)
            return
        if kind == "DELETED":
            if key:
                self.expectations.deletion_observed(key, obj_key(pod))
                self.queue.add(key)
            return
        # MODIFIED
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        if meta(new).get("deletionTimestamp") and not meta(old).get("deletionTimestamp") and key:
            self.expectations.deletion_observed(key, obj_key(new))
        old_ref = controller_ref(old)
        if old_ref is not None and (ref is None or old_ref.get("uid") != ref.get("uid")):
            okey = self._rs_for_ref(ns, old_ref)
            if okey:
                self.queue.add(okey)
        if key:
            self.queue.add(key)
            mrs = int(((self.caches.informer("ReplicaSet").cache.get(key) or {}).get("spec") or {})
                      .get("minReadySeconds") or 0)
            if mrs and not is_pod_ready(old) and is_pod_ready(new):
                self.queue.add_after(key, mrs + 1)
        elif ref is None and (meta(old).get("labels") != meta(new).get("labels") or old_ref is not None):
            for k in self._matching_rs(new):
                self.queue.add(k)

    # ---- sync -------------------------------------------------------------------------------

    def _candidate_pods(self, rs: dict) -> list[dict]:
        ns = meta(rs).get("namespace", "")
        cache = self.caches.informer("Pod").cache
        sel = (rs.get("spec") or {}).get("selector") or {}
        ml = sel.get("matchLabels") or {}
        keys = set(self.caches.pods.matching(ns, ml)) if ml else {
            k for k in cache if k.startswith(ns + "/")}
        keys |= self._owned.get(meta(rs).get("uid"), set())
        return [p for p in (cache.get(k) for k in keys) if p is not None]

    def _related_pods(self, rs: dict) -> list[dict]:
        """getIndirectlyRelatedPods: the pods of every ReplicaSet with the same controller."""
        ref = controller_ref(rs)
        if ref is None:
            return []
        ns = meta(rs).get("namespace", "")
        cache = self.caches.informer("Pod").cache
        out = []
        for other in list(self.caches.informer("ReplicaSet").cache.values()):
            r = controller_ref(other)
            if meta(other).get("namespace") == ns and r is not None and r.get("uid") == ref.get("uid"):
                out += [cache[k] for k in self._owned.get(meta(other).get("uid"), ()) if k in cache]
        return out

    async def _create_pods(self, rs: dict, key: str, n: int) -> str | None:
        self.expectations.expect_creations(key, n)
        done, err = 0, None
        for size in slow_start_batches(n):
            results = await asyncio.gather(*(self._create_one(rs) for _ in range(size)))
            done += sum(1 for r in results if r is None)
            errors = [r for r in results if r is not None]
            if errors:
                err = errors[0]
                break
        for _ in range(n - done):
            self.expectations.creation_observed(key)
        return err

    async def _create_one(self, rs: dict) -> str | None:
        try:
            pod = await self.client.create(POD, new_pod(rs), manager=FIELD_MANAGER)
        except APIError as e:
            if namespace_terminating(e):
                return None
            msg = f"Error creating: {e.message or e}"
            await record_event(self.client, rs, "Warning", "FailedCreate", msg, COMPONENT)
            return str(e.message or e)
        await record_event(self.client, rs, "Normal", "SuccessfulCreate",
                           f"Created pod: {meta(pod)['name']}", COMPONENT)
        return None

    async def _delete_pods(self, rs: dict, key: str, pods: list[dict]) -> str | None:
        self.expectations.expect_deletions(key, [obj_key(p) for p in pods])

        async def one(p: dict) -> str | None:
            try:
                await self.client.delete(POD, meta(p)["namespace"], meta(p)["name"])
            except APIError as e:
                self.expectations.deletion_observed(key, obj_key(p))
                if e.code == 404:
                    return None
                await record_event(self.client, rs, "Warning", "FailedDelete",
                                   f"Error deleting: {e.message or e}", COMPONENT)
                return str(e.message or e)
            await record_event(self.client, rs, "Normal", "SuccessfulDelete",
                               f"Deleted pod: {meta(p)['name']}", COMPONENT)
            return None
        errors = [r for r in await asyncio.gather(*(one(p) for p in pods)) if r is not None]
        return errors[0] if errors else None

    async def sync(self, key: str) -> None:
        self.syncs += 1
        rs = self.caches.informer("ReplicaSet").cache.get(key)
        if rs is None:
            self.expectations.delete(key)
            return
        needs_sync = self.expectations.satisfied(key)
        pods = [p for p in self._candidate_pods(rs) if is_pod_active(p)]
        pods = await adopt_and_release(self.client, REPLICASET, rs, claim_pods(rs, pods))
        err = None
        if needs_sync and not meta(rs).get("deletionTimestamp"):
            plan = manage_replicas(rs, pods, self._related_pods(rs), now_utc(), self.burst)
            if plan.create:
                err = await self._create_pods(rs, key, plan.create)
            elif plan.delete:
                err = await self._delete_pods(rs, key, plan.delete)
        now = now_utc()
        status = calculate_status(rs, pods, err, now)
        if status != (rs.get("status") or {}):
            body = dict(rs, status=status)
            try:
                rs = await self.client.update_status(REPLICASET, body, manager=FIELD_MANAGER)
            except APIError as e:
                if e.code == 404:
                    return
                raise
        mrs = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        st = rs.get("status") or {}
        if (err is None and mrs > 0 and st.get("readyReplicas", 0) == replicas(rs)
                and st.get("availableReplicas", 0) != replicas(rs)):
            self.queue.add_after(key, mrs)
        if err is not None:
            raise RuntimeError(err)

