"""The Deployment controller, as kube-controller-manager 1.32 runs it (pkg/controller/deployment).

Theory of operation
-------------------
A Deployment owns ReplicaSets, one per pod template it has had. The ReplicaSet of the current
template (the *new* one) is named `<deployment>-<pod-template-hash>` and carries the hash as the
`pod-template-hash` label in its labels, its selector and its template, so the pods of two
templates never match each other's ReplicaSet. A ReplicaSet is the new one when its template
equals the Deployment's, ignoring that label (EqualIgnoreHash); all others are old.

One sync of one Deployment (syncDeployment), after claiming ReplicaSets (adopt matching orphans,
release owned ones that stopped matching, as ClaimReplicaSets):

- being deleted: only the status is brought up to date;
- paused (or a scaling event: the Deployment's replicas differ from an active ReplicaSet's
  `deployment.kubernetes.io/desired-replicas`): `scale` resizes the active ReplicaSets, all of
  it to one active set, else proportionally to their `max-replicas` annotation with the
  leftover to the largest (newer first when growing, older first when shrinking); a paused
  Deployment also has its history cleaned up. No new ReplicaSet is created while paused;
- RollingUpdate: create or find the new ReplicaSet, then scale it up to at most
  replicas + maxSurge pods in all (NewRSNewReplicas); if nothing grew, scale old ReplicaSets
  down without going below replicas - maxUnavailable available pods (unhealthy old pods
  first); surge rounds up and unavailable rounds down when they are percentages, and both
  zero means one unavailable (ResolveFenceposts);
- Recreate: scale every old ReplicaSet to zero, wait until none of their pods is running,
  then create the new ReplicaSet at full size;
- when the rollout is complete, old ReplicaSets beyond revisionHistoryLimit are deleted
  (oldest revision first, only ones with no pods).

Revisions: the new ReplicaSet gets `deployment.kubernetes.io/revision` = 1 + the highest of the
old ones (a ReplicaSet brought back by a rollback keeps its earlier numbers in
`revision-history`), the Deployment gets the same revision annotation, and the ReplicaSet gets
the Deployment's own annotations (`kubernetes.io/change-cause` for `rollout history`) and
`desired-replicas` / `max-replicas`. `kubectl rollout undo` is client-side: it copies an old
ReplicaSet's template back into the Deployment, which then finds that ReplicaSet as its new one.

Status: replicas / updatedReplicas / readyReplicas / availableReplicas / unavailableReplicas
from the ReplicaSets' status, observedGeneration; Available (MinimumReplicasAvailable or
MinimumReplicasUnavailable against replicas - maxUnavailable); Progressing (NewReplicaSetCreated,
FoundNewReplicaSet, ReplicaSetUpdated while any count improves, NewReplicaSetAvailable when
complete, ProgressDeadlineExceeded when nothing improved for progressDeadlineSeconds,
DeploymentPaused / DeploymentResumed); a ReplicaFailure condition of the new ReplicaSet is
copied. A Deployment that has not progressed is re-queued for its deadline.

The pure core is `DeploymentSync`: the Deployment, its ReplicaSets and their pods in, a list
of `Action`s out (create/update/delete ReplicaSet, annotate the Deployment, write its status,
record an Event), computed the way the Go code makes its writes one after another, each write
applied to the core's own copies so later steps see it. `DeploymentController` is the shell that
runs the actions in order and stops at the first failure; everything is level-triggered, so a
restarted controller continues a rollout from what the API shows.

Deviations: the pod-template-hash is FNV-32a over the template's canonical JSON (sorted keys,
no spaces) plus the collision count as four little-endian bytes, encoded as Kubernetes encodes
it (SafeEncodeString) - Kubernetes hashes Go's %#v dump of its struct, which cannot be
reproduced outside Go, so the names differ from a real cluster's for the same template but are
just as stable. The Deployment's revision annotation is written with a metadata patch (a real
Deployment's status write may carry annotations; svcnet's status writes keep metadata).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

import orjson

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.controllers.endpointslice import (CacheController, WorkQueue, meta, namespace_terminating,
                                              obj_key)
from svcnet.controllers.replicaset import (FIELD_MANAGER, adopt_and_release, claim_objects,
                                           controller_ref, fmt_time, new_controller_ref, now_utc,
                                           parse_time, record_event, replicas)
from svcnet.registry.workloads import selector_matches

log = logging.getLogger("svcnet.controllers.deployment")

DEPLOYMENT, REPLICASET, POD = BY_KIND["Deployment"], BY_KIND["ReplicaSet"], BY_KIND["Pod"]
COMPONENT = "deployment-controller"

HASH_LABEL = "pod-template-hash"  # apps.DefaultDeploymentUniqueLabelKey
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# annotations the controller never copies from a Deployment to its ReplicaSets
SKIP_COPY = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
                       ROLLBACK_TO})
MAX_REV_HISTORY_CHARS = 2000
MAX_INT32 = 2 ** 31 - 1

# Condition reasons (deploymentutil)
NEW_RS = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


# =============================================================================================
# Pure helpers
# =============================================================================================

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # rand.SafeEncodeString's alphabet


def fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: dict, collision_count: int | None) -> str:
    """controller.ComputeHash (see the module docstring for the canonical form hashed)."""
    h = fnv32a(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = fnv32a(struct.pack("<I", collision_count & 0xFFFFFFFF), h)
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in str(h))


def _prune(v: Any) -> Any:
    """Semantic equality treats nil and empty maps/slices alike: drop empty values."""
    if isinstance(v, dict):
        out = {k: _prune(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [])}
    if isinstance(v, list):
        return [_prune(x) for x in v]
    return v


def template_without_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return _prune(t)


def equal_ignore_hash(t1: dict, t2: dict) -> bool:
    """deploymentutil.EqualIgnoreHash."""
    return template_without_hash(t1) == template_without_hash(t2)


def scaled_value(v: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    s = str(v)
    if s.endswith("%"):
        pct = int(s[:-1])
        return math.ceil(pct * total / 100) if round_up else math.floor(pct * total / 100)
    return int(s)


def is_rolling(d: dict) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(d: dict) -> tuple[int, int]:
    """deploymentutil.ResolveFenceposts: (surge, unavailable); both zero means one unavailable."""
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: dict) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: dict) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def has_progress_deadline(d: dict) -> bool:
    p = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return p is not None and p != MAX_INT32


def annotations(obj: dict) -> dict:
    return meta(obj).get("annotations") or {}


def revision(rs: dict) -> int:
    try:
        return int(annotations(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def _int_annotation(rs: dict, key: str) -> int | None:
    try:
        return int(annotations(rs)[key])
    except (KeyError, ValueError):
        return None


def _st(rs: dict | None, key: str) -> int:
    return int(((rs or {}).get("status") or {}).get(key) or 0)


def spec_replicas_sum(rss: Iterable[dict | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def status_sum(rss: Iterable[dict | None], key: str) -> int:
    return sum(_st(rs, key) for rs in rss if rs is not None)


def active(rss: Iterable[dict | None]) -> list[dict]:
    """FilterActiveReplicaSets."""
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def _created(rs: dict) -> tuple:
    return (meta(rs).get("creationTimestamp") or "", meta(rs).get("name", ""))


def by_creation(rss: list[dict]) -> list[dict]:
    return sorted(rss, key=_created)


def find_new_rs(d: dict, rss: list[dict]) -> dict | None:
    """FindNewReplicaSet: the oldest ReplicaSet whose template equals the Deployment's."""
    tmpl = (d.get("spec") or {}).get("template") or {}
    for rs in by_creation(rss):
        if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, tmpl):
            return rs
    return None


def get_condition(status: dict, ctype: str) -> dict | None:
    for c in status.get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return None


def new_condition(ctype: str, status: str, reason: str, message: str, now: datetime) -> dict:
    t = fmt_time(now)
    return {"type": ctype, "status": status, "lastUpdateTime": t, "lastTransitionTime": t,
            "reason": reason, "message": message}


def set_condition(status: dict, cond: dict) -> None:
    """SetDeploymentCondition: no change for the same status and reason; keep the transition
    time when only the reason changes."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond = dict(cond, lastTransitionTime=cur.get("lastTransitionTime"))
    status["conditions"] = [c for c in status.get("conditions") or () if c.get("type") != cond["type"]]
    status["conditions"].append(cond)


def remove_condition(status: dict, ctype: str) -> None:
    if "conditions" in status:
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != ctype]


def deployment_complete(d: dict, status: dict) -> bool:
    n = replicas(d)
    return (status.get("updatedReplicas", 0) == n and status.get("replicas", 0) == n
            and status.get("availableReplicas", 0) == n
            and status.get("observedGeneration", 0) >= meta(d).get("generation", 0))


def deployment_progressing(d: dict, new: dict) -> bool:
    old = d.get("status") or {}
    g = lambda s, k: s.get(k, 0) or 0  # noqa: E731
    return (g(new, "updatedReplicas") > g(old, "updatedReplicas")
            or g(new, "replicas") - g(new, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
            or g(new, "readyReplicas") > g(old, "readyReplicas")
            or g(new, "availableReplicas") > g(old, "availableReplicas"))


def deployment_timed_out(d: dict, status: dict, now: datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    c = get_condition(status, "Progressing")
    if c is None or c.get("reason") == NEW_RS_AVAILABLE:
        return False
    if c.get("reason") == TIMED_OUT:
        return True
    t = parse_time(c.get("lastUpdateTime"))
    return t is not None and (now - t).total_seconds() > d["spec"]["progressDeadlineSeconds"]


@dataclass
class Action:
    """One write of a sync. verb: create_rs | update_rs | delete_rs | annotate | status | event."""
    verb: str
    obj: dict | None = None
    event: tuple[str, str, str] | None = None  # (type, reason, message)


# =============================================================================================
# The pure core
# =============================================================================================

class DeploymentSync:
    """syncDeployment for one Deployment whose ReplicaSets are already claimed.

    `run()` returns the actions; `requeue_after` is set when the Deployment must be looked at
    again for its progress deadline or its new pods' availability."""

    def __init__(self, d: dict, rss: list[dict], pods: list[dict], now: datetime):
        self.d = copy.deepcopy(d)
        self.orig = d
        self.rss = [copy.deepcopy(rs) for rs in rss]
        self.pods = pods
        self.now = now
        self.actions: list[Action] = []
        self.requeue_after: float | None = None

    # -- writes (applied to our copies) --

    def _event(self, etype: str, reason: str, message: str) -> None:
        self.actions.append(Action("event", self.d, (etype, reason, message)))

    def _desired_max(self) -> tuple[int, int]:
        return replicas(self.d), replicas(self.d) + max_surge(self.d)

    def _set_replicas_annotations(self, rs: dict) -> bool:
        desired, mx = self._desired_max()
        a = meta(rs).setdefault("annotations", {})
        changed = a.get(DESIRED_REPLICAS) != str(desired) or a.get(MAX_REPLICAS) != str(mx)
        a[DESIRED_REPLICAS], a[MAX_REPLICAS] = str(desired), str(mx)
        return changed

    def scale_rs(self, rs: dict, new_scale: int, operation: str | None = None) -> bool:
        """scaleReplicaSet: update size and replica annotations; an Event when the size changed."""
        old = replicas(rs)
        size_changed = old != new_scale
        desired, mx = self._desired_max()
        ann_changed = (annotations(rs).get(DESIRED_REPLICAS) != str(desired)
                       or annotations(rs).get(MAX_REPLICAS) != str(mx))
        if not (size_changed or ann_changed):
            return False
        rs["spec"]["replicas"] = new_scale
        self._set_replicas_annotations(rs)
        self.actions.append(Action("update_rs", rs))
        if size_changed:
            op = operation or ("up" if old < new_scale else "down")
            self._event("Normal", "ScalingReplicaSet",
                        f"Scaled {op} replica set {meta(rs)['name']} from {old} to {new_scale}")
        return size_changed

    def scale_and_record(self, rs: dict, new_scale: int) -> bool:
        if replicas(rs) == new_scale:
            return False
        return self.scale_rs(rs, new_scale)

    # -- revisions --

    def _copy_annotations(self, rs: dict) -> bool:
        a = meta(rs).setdefault("annotations", {})
        changed = False
        for k, v in annotations(self.d).items():
            if k in SKIP_COPY or a.get(k) == v:
                continue
            a[k] = v
            changed = True
        return changed

    def set_new_rs_annotations(self, rs: dict, new_revision: str, exists: bool) -> bool:
        """SetNewReplicaSetAnnotations."""
        changed = self._copy_annotations(rs)
        a = meta(rs)["annotations"]
        had = REVISION in a
        old_rev = a.get(REVISION, "")
        try:
            old_int = int(old_rev) if old_rev else 0
        except ValueError:
            return False
        new_int = int(new_revision)
        if old_int < new_int:
            a[REVISION] = new_revision
            changed = True
        if had and old_int < new_int:
            hist = a.get(REVISION_HISTORY, "")
            olds = hist.split(",")
            if not olds[0]:
                a[REVISION_HISTORY] = old_rev
            else:
                total, start = len(hist) + len(old_rev) + 1, 0
                while total > MAX_REV_HISTORY_CHARS and start < len(olds):
                    total -= len(olds[start]) + 1
                    start += 1
                if total <= MAX_REV_HISTORY_CHARS:
                    a[REVISION_HISTORY] = ",".join(olds[start:] + [old_rev])
        if not exists and self._set_replicas_annotations(rs):
            changed = True
        return changed

    def set_deployment_revision(self, rev: str) -> None:
        a = meta(self.d).setdefault("annotations", {})
        a[REVISION] = rev

    # -- ReplicaSets --

    def new_and_old(self) -> tuple[dict | None, list[dict]]:
        new = find_new_rs(self.d, self.rss)
        return new, [rs for rs in self.rss if rs is not new]

    def get_all(self, create: bool) -> tuple[dict | None, list[dict]]:
        """getAllReplicaSetsAndSyncRevision."""
        existing, olds = self.new_and_old()
        new_rev = str(max((revision(rs) for rs in olds), default=0) + 1)
        if existing is not None:
            mrs = int(self.d["spec"].get("minReadySeconds") or 0)
            updated = self.set_new_rs_annotations(existing, new_rev, True)
            if updated or int(existing["spec"].get("minReadySeconds") or 0) != mrs:
                existing["spec"]["minReadySeconds"] = mrs
                self.actions.append(Action("update_rs", existing))
            self.set_deployment_revision(annotations(existing).get(REVISION, ""))
            if has_progress_deadline(self.d) and get_condition(self.d["status"], "Progressing") is None:
                set_condition(self.d["status"], new_condition(
                    "Progressing", "True", FOUND_NEW_RS,
                    f'Found new replica set "{meta(existing)["name"]}"', self.now))
            return existing, olds
        if not create:
            return None, olds
        tmpl = copy.deepcopy(self.d["spec"].get("template") or {})
        h = compute_hash(tmpl, (self.d.get("status") or {}).get("collisionCount"))
        tmeta = tmpl.setdefault("metadata", {})
        tmeta["labels"] = dict(tmeta.get("labels") or {}, **{HASH_LABEL: h})
        sel = copy.deepcopy(self.d["spec"].get("selector") or {})
        sel["matchLabels"] = dict(sel.get("matchLabels") or {}, **{HASH_LABEL: h})
        dm = meta(self.d)
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{dm['name']}-{h}", "namespace": dm.get("namespace", ""),
                           "ownerReferences": [new_controller_ref(self.d)],
                           "labels": dict(tmeta["labels"])},
              "spec": {"replicas": 0, "minReadySeconds": int(self.d["spec"].get("minReadySeconds") or 0),
                       "selector": sel, "template": tmpl},
              "status": {"replicas": 0}}
        rs["spec"]["replicas"] = self.new_rs_new_replicas(olds + [rs], rs)
        self.set_new_rs_annotations(rs, new_rev, False)
        self.rss.append(rs)
        self.actions.append(Action("create_rs", rs))
        if replicas(rs) > 0:
            self._event("Normal", "ScalingReplicaSet",
                        f"Scaled up replica set {meta(rs)['name']} from 0 to {replicas(rs)}")
        self.set_deployment_revision(new_rev)
        if has_progress_deadline(self.d):
            set_condition(self.d["status"], new_condition(
                "Progressing", "True", NEW_RS, f'Created new replica set "{meta(rs)["name"]}"', self.now))
        return rs, olds

    def new_rs_new_replicas(self, all_rss: list[dict], new: dict) -> int:
        """NewRSNewReplicas."""
        want = replicas(self.d)
        if not is_rolling(self.d):
            return want
        ru = (self.d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        surge = scaled_value(ru.get("maxSurge", "25%"), want, True)
        current = spec_replicas_sum(all_rss)
        max_total = want + surge
        if current >= max_total:
            return replicas(new)
        up = min(max_total - current, want - replicas(new))
        return replicas(new) + up

    # -- status --

    def calculate_status(self, all_rss: list[dict | None], new: dict | None) -> dict:
        available = status_sum(all_rss, "availableReplicas")
        total = spec_replicas_sum(all_rss)
        st: dict[str, Any] = {
            "observedGeneration": meta(self.d).get("generation", 0),
            "replicas": status_sum(all_rss, "replicas"),
            "updatedReplicas": status_sum([new], "replicas"),
            "readyReplicas": status_sum(all_rss, "readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
        }
        cc = (self.d.get("status") or {}).get("collisionCount")
        if cc is not None:
            st["collisionCount"] = cc
        st["conditions"] = copy.deepcopy((self.d.get("status") or {}).get("conditions") or [])
        if available >= replicas(self.d) - max_unavailable(self.d):
            set_condition(st, new_condition("Available", "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", self.now))
        else:
            set_condition(st, new_condition("Available", "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", self.now))
        return st

    def sync_rollout_status(self, all_rss: list[dict | None], new: dict | None) -> None:
        """syncRolloutStatus."""
        st = self.calculate_status(all_rss, new)
        if not has_progress_deadline(self.d):
            remove_condition(st, "Progressing")
        cur = get_condition(self.d["status"], "Progressing")
        complete_rollout = (st["replicas"] == st["updatedReplicas"] and cur is not None
                            and cur.get("reason") == NEW_RS_AVAILABLE)
        name = f'ReplicaSet "{meta(new)["name"]}"' if new is not None else f'Deployment "{meta(self.d)["name"]}"'
        if has_progress_deadline(self.d) and not complete_rollout:
            if deployment_complete(self.d, st):
                set_condition(st, new_condition("Progressing", "True", NEW_RS_AVAILABLE,
                                                f"{name} has successfully progressed.", self.now))
            elif deployment_progressing(self.orig, st):
                c = new_condition("Progressing", "True", RS_UPDATED, f"{name} is progressing.", self.now)
                if cur is not None:
                    if cur.get("status") == "True":
                        c["lastTransitionTime"] = cur.get("lastTransitionTime")
                    remove_condition(st, "Progressing")
                set_condition(st, c)
            elif deployment_timed_out(self.d, st, self.now):
                set_condition(st, new_condition("Progressing", "False", TIMED_OUT,
                                                f"{name} has timed out progressing.", self.now))
        failure = self.replica_failure(all_rss, new)
        if failure is not None:
            set_condition(st, failure)
        else:
            remove_condition(st, "ReplicaFailure")
        self.d["status"] = st
        if _norm_status(st) == _norm_status(self.orig.get("status") or {}):
            self.requeue_after = self.requeue_stuck(st)

    def replica_failure(self, all_rss: list[dict | None], new: dict | None) -> dict | None:
        """getReplicaFailures: the new ReplicaSet's ReplicaFailure, else an old one's."""
        order = ([new] if new is not None else []) + [rs for rs in all_rss if rs is not None and rs is not new]
        for rs in order:
            c = get_condition(rs.get("status") or {}, "ReplicaFailure")
            if c is not None:
                return {"type": "ReplicaFailure", "status": c.get("status"),
                        "lastUpdateTime": c.get("lastTransitionTime"),
                        "lastTransitionTime": c.get("lastTransitionTime"),
                        "reason": c.get("reason"), "message": c.get("message")}
        return None

    def requeue_stuck(self, st: dict) -> float | None:
        cur = get_condition(self.orig.get("status") or {}, "Progressing")
        if not has_progress_deadline(self.d) or cur is None:
            return None
        if deployment_complete(self.d, st) or cur.get("reason") == TIMED_OUT:
            return None
        t = parse_time(cur.get("lastUpdateTime"))
        if t is None:
            return None
        after = (t - self.now).total_seconds() + self.d["spec"]["progressDeadlineSeconds"]
        return 1.0 if after < 1 else after + 1

    def sync_status_only(self) -> None:
        new, olds = self.get_all(False)
        self.sync_deployment_status(olds + [new], new)

    def sync_deployment_status(self, all_rss: list[dict | None], new: dict | None) -> None:
        self.d["status"] = self.calculate_status(all_rss, new)

    # -- paused / scaling --

    def check_paused_conditions(self) -> None:
        if not has_progress_deadline(self.d):
            return
        cur = get_condition(self.d["status"], "Progressing")
        if cur is not None and cur.get("reason") == TIMED_OUT:
            return
        paused_cond = cur is not None and cur.get("reason") == PAUSED
        if self.d["spec"].get("paused") and not paused_cond:
            set_condition(self.d["status"], new_condition("Progressing", "Unknown", PAUSED,
                                                          "Deployment is paused", self.now))
        elif not self.d["spec"].get("paused") and paused_cond:
            set_condition(self.d["status"], new_condition("Progressing", "Unknown", RESUMED,
                                                          "Deployment is resumed", self.now))

    def is_scaling_event(self) -> bool:
        new, olds = self.get_all(False)
        for rs in active(olds + [new]):
            desired = _int_annotation(rs, DESIRED_REPLICAS)
            if desired is not None and desired != replicas(self.d):
                return True
        return False

    def sync(self) -> None:
        new, olds = self.get_all(False)
        self.scale(new, olds)
        if self.d["spec"].get("paused"):
            self.cleanup(olds)
        self.sync_deployment_status(olds + [new], new)

    def _fraction(self, rs: dict) -> int:
        if replicas(self.d) == 0:
            return -replicas(rs)
        deployment_replicas = replicas(self.d) + max_surge(self.d)
        annotated = _int_annotation(rs, MAX_REPLICAS)
        if annotated is None:
            annotated = (self.d.get("status") or {}).get("replicas", 0)
        if not annotated:
            return 0
        size = replicas(rs) * deployment_replicas / annotated
        return _round_half_away(size) - replicas(rs)

    def _proportion(self, rs: dict, to_add: int, added: int) -> int:
        if replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        frac = self._fraction(rs)
        allowed = to_add - added
        return min(frac, allowed) if to_add > 0 else max(frac, allowed)

    def scale(self, new: dict | None, olds: list[dict]) -> None:
        """DeploymentController.scale."""
        aol = self.find_active_or_latest(new, olds)
        if aol is not None:
            if replicas(aol) != replicas(self.d):
                self.scale_and_record(aol, replicas(self.d))
            return
        if self.is_saturated(new):
            for old in active(olds):
                self.scale_and_record(old, 0)
            return
        if not is_rolling(self.d):
            return
        rss = active(olds + [new])
        allowed = replicas(self.d) + max_surge(self.d) if replicas(self.d) > 0 else 0
        to_add = allowed - spec_replicas_sum(rss)
        op = None
        if to_add > 0:  # ReplicaSetsBySizeNewer
            rss.sort(key=lambda r: _created(r), reverse=True)
            rss.sort(key=lambda r: replicas(r), reverse=True)
            op = "up"
        elif to_add < 0:  # ReplicaSetsBySizeOlder
            rss.sort(key=_created)
            rss.sort(key=lambda r: replicas(r), reverse=True)
            op = "down"
        added = 0
        sizes: dict[str, int] = {}
        for rs in rss:
            if to_add != 0:
                p = self._proportion(rs, to_add, added)
                sizes[meta(rs)["name"]] = replicas(rs) + p
                added += p
            else:
                sizes[meta(rs)["name"]] = replicas(rs)
        for i, rs in enumerate(rss):
            n = meta(rs)["name"]
            if i == 0 and to_add != 0:
                sizes[n] = max(sizes[n] + to_add - added, 0)
            self.scale_rs(rs, sizes[n], op)

    def find_active_or_latest(self, new: dict | None, olds: list[dict]) -> dict | None:
        if new is None and not olds:
            return None
        olds_sorted = sorted(olds, key=_created, reverse=True)
        act = active(olds_sorted + [new])
        if not act:
            return new if new is not None else olds_sorted[0]
        return act[0] if len(act) == 1 else None

    def is_saturated(self, rs: dict | None) -> bool:
        if rs is None:
            return False
        desired = _int_annotation(rs, DESIRED_REPLICAS)
        n = replicas(self.d)
        return replicas(rs) == n and desired == n and _st(rs, "availableReplicas") == n

    # -- cleanup --

    def cleanup(self, olds: list[dict]) -> None:
        """cleanupDeployment: delete the oldest old ReplicaSets beyond revisionHistoryLimit."""
        limit = self.d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in olds if not meta(rs).get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        alive.sort(key=lambda r: (revision(r), _created(r)))
        for rs in alive[:diff]:
            if (_st(rs, "replicas") != 0 or replicas(rs) != 0
                    or meta(rs).get("generation", 0) > _st(rs, "observedGeneration")):
                continue
            self.actions.append(Action("delete_rs", rs))

    # -- rolling --

    def rollout_rolling(self) -> None:
        new, olds = self.get_all(True)
        all_rss = olds + [new]
        if self.reconcile_new(all_rss, new):
            return self.sync_rollout_status(all_rss, new)
        if self.reconcile_old(all_rss, active(olds), new):
            return self.sync_rollout_status(all_rss, new)
        if deployment_complete(self.d, self.d.get("status") or {}):
            self.cleanup(olds)
        self.sync_rollout_status(all_rss, new)

    def reconcile_new(self, all_rss: list[dict], new: dict) -> bool:
        want = replicas(self.d)
        if replicas(new) == want:
            return False
        if replicas(new) > want:
            return self.scale_and_record(new, want)
        return self.scale_and_record(new, self.new_rs_new_replicas(all_rss, new))

    def reconcile_old(self, all_rss: list[dict], olds: list[dict], new: dict) -> bool:
        if spec_replicas_sum(olds) == 0:
            return False
        all_count = spec_replicas_sum(all_rss)
        min_available = replicas(self.d) - max_unavailable(self.d)
        new_unavailable = replicas(new) - _st(new, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self.cleanup_unhealthy(olds, max_scaled_down)
        scaled = self.scale_down_old_for_rolling(all_rss, olds)
        return cleaned + scaled > 0

    def cleanup_unhealthy(self, olds: list[dict], max_cleanup: int) -> int:
        total = 0
        for rs in by_creation(olds):
            if total >= max_cleanup:
                break
            n, avail = replicas(rs), _st(rs, "availableReplicas")
            if n == 0 or n == avail:
                continue
            down = min(max_cleanup - total, n - avail)
            self.scale_and_record(rs, n - down)
            total += down
        return total

    def scale_down_old_for_rolling(self, all_rss: list[dict], olds: list[dict]) -> int:
        min_available = replicas(self.d) - max_unavailable(self.d)
        available = status_sum(all_rss, "availableReplicas")
        if available <= min_available:
            return 0
        total, goal = 0, available - min_available
        for rs in by_creation(olds):
            if total >= goal:
                break
            if replicas(rs) == 0:
                continue
            down = min(replicas(rs), goal - total)
            self.scale_and_record(rs, replicas(rs) - down)
            total += down
        return total

    # -- recreate --

    def old_pods_running(self, new: dict | None, olds: list[dict]) -> bool:
        if status_sum(olds, "replicas") > 0:
            return True
        uids = {meta(rs).get("uid") for rs in olds}
        for p in self.pods:
            ref = controller_ref(p)
            if ref is None or ref.get("uid") not in uids:
                continue
            if (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                return True
        return False

    def rollout_recreate(self) -> None:
        new, olds = self.get_all(False)
        all_rss = olds + [new]
        scaled = False
        for rs in active(olds):
            scaled = self.scale_and_record(rs, 0) or scaled
        if scaled:
            return self.sync_rollout_status(all_rss, new)
        if self.old_pods_running(new, olds):
            return self.sync_rollout_status(all_rss, new)
        if new is None:
            new, olds = self.get_all(True)
            all_rss = olds + [new]
        self.scale_and_record(new, replicas(self.d))
        if deployment_complete(self.d, self.d.get("status") or {}):
            self.cleanup(olds)
        self.sync_rollout_status(all_rss, new)

    # -- entry point --

    def run(self) -> list[Action]:
        self.d.setdefault("status", {})
        orig_rev = annotations(self.orig).get(REVISION)
        if meta(self.d).get("deletionTimestamp"):
            self.sync_status_only()
        else:
            self.check_paused_conditions()
            if self.d["spec"].get("paused") or self.is_scaling_event():
                self.sync()
            elif is_rolling(self.d):
                self.rollout_rolling()
            else:
                self.rollout_recreate()
        rev = annotations(self.d).get(REVISION)
        if rev and rev != orig_rev:
            self.actions.append(Action("annotate", {REVISION: rev}))
        if _norm_status(self.d["status"]) != _norm_status(self.orig.get("status") or {}):
            self.actions.append(Action("status", wire_status(self.d["status"])))
        return self.actions


def _round_half_away(x: float) -> int:
    """integer.RoundToInt32: half away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def _norm_status(st: dict) -> dict:
    """Status as the API stores it: zero counts omitted (omitempty)."""
    return {k: v for k, v in st.items() if v not in (0, None, [], {})}


_OMITEMPTY = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
              "unavailableReplicas", "conditions")


def wire_status(st: dict) -> dict:
    """DeploymentStatus as the API serves it: its counts and conditions are omitempty."""
    return {k: v for k, v in st.items() if not (k in _OMITEMPTY and not v)}


def reconcile(d: dict, rss: list[dict], pods: list[dict], now: datetime) -> DeploymentSync:
    """The pure entry point: run one sync, return it (its .actions and .requeue_after)."""
    s = DeploymentSync(d, rss, pods, now)
    s.run()
    return s


# =============================================================================================
# The controller
# =============================================================================================

class DeploymentController(CacheController):
    """Rolls every Deployment's ReplicaSets towards its template."""

    WHAT = "deployment"
    KINDS = ("Deployment", "ReplicaSet", "Pod")
    CONFLICT_BACKOFF = 0.05
    MAX_RETRIES = 15

    def __init__(self, client, workers: int = 5):
        self.client = client
        self.workers = workers
        self.queue = WorkQueue(base_delay=0.005, max_delay=1000.0)
        self.caches = None
        self._tasks: list[asyncio.Task] = []
        self._handlers: list[tuple[Any, Callable]] = []
        self._conflicts: dict[str, int] = {}
        self.syncs = 0

    def _handler_table(self) -> list[tuple[str, Callable]]:
        return [("Deployment", self._on_deployment), ("ReplicaSet", self._on_rs),
                ("Pod", self._on_pod)]

    def _initial_queue(self) -> None:
        for key in list(self.caches.informer("Deployment").cache):
            self.queue.add(key)

    # ---- handlers ---------------------------------------------------------------------------

    def _on_deployment(self, kind: str, old: dict | None, new: dict | None) -> None:
        self.queue.add(obj_key(new or old))

    def _owner_key(self, obj: dict) -> str | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        key = f"{meta(obj).get('namespace', '')}/{ref.get('name')}"
        d = self.caches.informer("Deployment").cache.get(key)
        return key if d is not None and meta(d).get("uid") == ref.get("uid") else None

    def _matching(self, rs: dict) -> list[str]:
        ns, labels = meta(rs).get("namespace", ""), meta(rs).get("labels")
        return [k for k, d in list(self.caches.informer("Deployment").cache.items())
                if meta(d).get("namespace") == ns
                and selector_matches((d.get("spec") or {}).get("selector"), labels)]

    def _on_rs(self, kind: str, old: dict | None, new: dict | None) -> None:
        for obj in (old, new):
            if obj is None:
                continue
            key = self._owner_key(obj)
            if key:
                self.queue.add(key)
            elif controller_ref(obj) is None and kind != "DELETED":
                for k in self._matching(obj):
                    self.queue.add(k)

    def _on_pod(self, kind: str, old: dict | None, new: dict | None) -> None:
        """deletePod: a Recreate Deployment waits for its old pods to be gone."""
        if kind != "DELETED":
            return
        ref = controller_ref(old)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.caches.informer("ReplicaSet").cache.get(f"{meta(old).get('namespace', '')}/{ref.get('name')}")
        if rs is not None:
            key = self._owner_key(rs)
            if key:
                self.queue.add(key)

    # ---- sync -------------------------------------------------------------------------------

    async def _claim(self, d: dict) -> list[dict]:
        """ClaimReplicaSets over the ReplicaSets of the Deployment's namespace."""
        ns = meta(d).get("namespace", "")
        candidates = [rs for rs in list(self.caches.informer("ReplicaSet").cache.values())
                      if meta(rs).get("namespace") == ns]
        claim = claim_objects(d, candidates, (d.get("spec") or {}).get("selector"))
        return await adopt_and_release(self.client, DEPLOYMENT, d, claim, REPLICASET)

    def _pods(self, d: dict, rss: list[dict]) -> list[dict]:
        uids = {meta(rs).get("uid") for rs in rss}
        ns = meta(d).get("namespace", "")
        return [p for k, p in list(self.caches.informer("Pod").cache.items())
                if k.startswith(ns + "/") and (controller_ref(p) or {}).get("uid") in uids]

    async def sync(self, key: str) -> None:
        self.syncs += 1
        d = self.caches.informer("Deployment").cache.get(key)
        if d is None:
            return
        rss = await self._claim(d)
        pods = self._pods(d, rss) if not is_rolling(d) else []
        s = reconcile(d, rss, pods, now_utc())
        await self.execute(key, d, s.actions)
        if s.requeue_after is not None:
            self.queue.add_after(key, s.requeue_after)

    async def execute(self, key: str, d: dict, actions: list[Action]) -> None:
        """Run the actions in order; the first failure ends the sync (it is retried)."""
        ns, name = meta(d).get("namespace", ""), meta(d)["name"]
        written: dict[str, dict] = {}  # ReplicaSet name -> what the API returned
        for a in actions:
            if a.verb == "event":
                await record_event(self.client, d, *a.event, COMPONENT)
            elif a.verb == "create_rs":
                try:
                    written[meta(a.obj)["name"]] = await self.client.create(REPLICASET, a.obj,
                                                                            manager=FIELD_MANAGER)
                except APIError as e:
                    if namespace_terminating(e):
                        return
                    if e.code == 409 and e.reason == "AlreadyExists":
                        await self._on_collision(d, a.obj)
                        return
                    await record_event(self.client, d, "Warning", FAILED_RS_CREATE,
                                       f'Failed to create new replica set "{meta(a.obj)["name"]}": {e.message}',
                                       COMPONENT)
                    raise
            elif a.verb == "update_rs":
                body = copy.deepcopy(a.obj)
                prev = written.get(meta(body)["name"])
                if prev is not None:
                    meta(body)["resourceVersion"] = meta(prev)["resourceVersion"]
                    meta(body)["uid"] = meta(prev)["uid"]
                written[meta(body)["name"]] = await self.client.update(REPLICASET, body,
                                                                       manager=FIELD_MANAGER)
            elif a.verb == "delete_rs":
                try:
                    await self.client.delete(REPLICASET, ns, meta(a.obj)["name"],
                                             {"preconditions": {"uid": meta(a.obj)["uid"]}})
                except APIError as e:
                    if e.code not in (404, 409):
                        raise
            elif a.verb == "annotate":
                d = await self.client.patch(DEPLOYMENT, ns, name, {"metadata": {"annotations": a.obj}},
                                            manager=FIELD_MANAGER)
            elif a.verb == "status":
                body = copy.deepcopy(d)
                body["status"] = a.obj
                await self.client.update_status(DEPLOYMENT, body, manager=FIELD_MANAGER)

    async def _on_collision(self, d: dict, rs: dict) -> None:
        """An existing ReplicaSet has the new one's name: ours with this template is fine (the
        informer was behind); anything else bumps status.collisionCount for a new hash."""
        cur = await self.client.get(REPLICASET, meta(d)["namespace"], meta(rs)["name"])
        ref = controller_ref(cur)
        if ref is not None and ref.get("uid") == meta(d)["uid"] and equal_ignore_hash(
                (cur.get("spec") or {}).get("template") or {}, d["spec"].get("template") or {}):
            self.queue.add(obj_key(d))
            return
        body = copy.deepcopy(d)
        st = body.setdefault("status", {})
        st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
        await self.client.update_status(DEPLOYMENT, body, manager=FIELD_MANAGER)
        self.queue.add(obj_key(d))
