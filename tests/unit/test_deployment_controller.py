"""The Deployment controller's pure core (pkg/controller/deployment semantics), driven through
whole rollouts by a small in-memory cluster: `Cluster.step()` runs one sync, applies its actions
to the stored Deployment and ReplicaSets as the API server would, then plays the ReplicaSet
controller and kubelet (every pod of a ReplicaSet exists at once; it is available when the test's
`healthy(rs)` says so)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from svcnet.controllers.deployment import (HASH_LABEL, MAX_REPLICAS, REVISION, REVISION_HISTORY,
                                           compute_hash, equal_ignore_hash, reconcile,
                                           resolve_fenceposts)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def deployment(replicas=4, image="v1", strategy=None, **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 1,
                         "annotations": {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     "strategy": strategy or {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600, **spec},
            "status": {}}


class Cluster:
    def __init__(self, d: dict, healthy=lambda rs: True):
        self.d = d
        self.rss: list[dict] = []
        self.healthy = healthy
        self.now = T0
        self.events: list[str] = []
        self.n = 0
        self.history: list[dict[str, int]] = []  # image -> available, per step

    def image(self, rs: dict) -> str:
        return rs["spec"]["template"]["spec"]["containers"][0]["image"]

    def step(self, seconds: float = 1.0):
        self.now += timedelta(seconds=seconds)
        s = reconcile(self.d, self.rss, [], self.now)
        for a in s.actions:
            if a.verb == "create_rs":
                rs = copy.deepcopy(a.obj)
                self.n += 1
                rs["metadata"].update(uid=f"rs-{self.n}", generation=1,
                                      creationTimestamp=f"2026-01-01T12:{self.n:02d}:00Z")
                assert all(r["metadata"]["name"] != rs["metadata"]["name"] for r in self.rss)
                self.rss.append(rs)
            elif a.verb == "update_rs":
                i = next(i for i, r in enumerate(self.rss) if r["metadata"]["name"] == a.obj["metadata"]["name"])
                new = copy.deepcopy(a.obj)
                new["status"] = self.rss[i]["status"]
                new["metadata"]["generation"] = self.rss[i]["metadata"]["generation"] + (
                    new["spec"] != self.rss[i]["spec"])
                self.rss[i] = new
            elif a.verb == "delete_rs":
                self.rss = [r for r in self.rss if r["metadata"]["name"] != a.obj["metadata"]["name"]]
            elif a.verb == "annotate":
                self.d["metadata"]["annotations"].update(a.obj)
            elif a.verb == "status":
                self.d["status"] = copy.deepcopy(a.obj)
            elif a.verb == "event":
                self.events.append(a.event[2])
        for rs in self.rss:  # the ReplicaSet controller and the kubelet, instantly
            n = rs["spec"]["replicas"]
            ok = n if self.healthy(rs) else 0
            rs["status"] = {"replicas": n, "readyReplicas": ok, "availableReplicas": ok,
                            "observedGeneration": rs["metadata"]["generation"]}
        avail: dict[str, int] = {}
        for rs in self.rss:
            avail[self.image(rs)] = avail.get(self.image(rs), 0) + rs["status"]["availableReplicas"]
        self.history.append(avail)
        return s

    def run(self, steps: int = 30):
        for _ in range(steps):
            self.step()

    def sizes(self) -> dict[str, int]:
        return {self.image(rs): rs["spec"]["replicas"] for rs in self.rss}

    def condition(self, ctype: str) -> tuple[str, str]:
        c = next(c for c in self.d["status"]["conditions"] if c["type"] == ctype)
        return c["status"], c["reason"]

    def update(self, **spec_changes) -> None:
        self.d["spec"].update(spec_changes)
        self.d["metadata"]["generation"] += 1

    def set_image(self, image: str) -> None:
        t = copy.deepcopy(self.d["spec"]["template"])
        t["spec"]["containers"][0]["image"] = image
        self.update(template=t)


# ---- pure helpers ---------------------------------------------------------------------------------

def test_pod_template_hash_is_stable_encoded_and_depends_on_template_and_collisions():
    t = deployment()["spec"]["template"]
    h = compute_hash(t, None)
    assert h == compute_hash(copy.deepcopy(t), None)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert compute_hash(t, 0) != h and compute_hash(t, 1) != compute_hash(t, 0)
    t2 = copy.deepcopy(t)
    t2["spec"]["containers"][0]["image"] = "v2"
    assert compute_hash(t2, None) != h


def test_equal_ignore_hash():
    a = deployment()["spec"]["template"]
    b = copy.deepcopy(a)
    b["metadata"]["labels"][HASH_LABEL] = "xyz"
    b["metadata"]["annotations"] = {}  # nil and empty are the same
    assert equal_ignore_hash(a, b)
    b["spec"]["containers"][0]["image"] = "v2"
    assert not equal_ignore_hash(a, b)


@pytest.mark.parametrize("surge,unavail,replicas,expected", [
    ("25%", "25%", 4, (1, 1)), ("25%", "25%", 10, (3, 2)), ("30%", "30%", 5, (2, 1)),
    (0, 0, 3, (0, 1)), (2, "0%", 3, (2, 0)), ("100%", 1, 3, (3, 1)), ("0%", "10%", 5, (0, 1)),
])
def test_fenceposts_round_surge_up_and_unavailable_down(surge, unavail, replicas, expected):
    d = deployment(replicas, strategy={"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}})
    assert resolve_fenceposts(d) == expected


# ---- first rollout --------------------------------------------------------------------------------

def test_a_new_deployment_creates_its_replica_set_at_full_size():
    c = Cluster(deployment(3))
    s = c.step()
    verbs = [a.verb for a in s.actions]
    assert verbs == ["create_rs", "event", "annotate", "status"]
    [rs] = c.rss
    h = compute_hash(deployment()["spec"]["template"], None)
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: h}
    assert rs["metadata"]["ownerReferences"][0]["uid"] == "d-uid"
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert rs["metadata"]["annotations"][MAX_REPLICAS] == "4"
    assert rs["spec"]["replicas"] == 3
    assert c.events == [f"Scaled up replica set web-{h} from 0 to 3"]
    assert c.d["metadata"]["annotations"][REVISION] == "1"
    assert c.condition("Progressing") == ("True", "NewReplicaSetCreated")
    c.run(3)
    st = c.d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"]) == (3, 3, 3)
    assert "unavailableReplicas" not in st  # omitempty, as the API serves it
    assert c.condition("Progressing") == ("True", "NewReplicaSetAvailable")
    assert c.condition("Available") == ("True", "MinimumReplicasAvailable")
    assert not c.step().actions  # settled: no writes


def test_annotations_are_copied_to_the_replica_set_except_the_controller_s_own():
    d = deployment()
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v1 please",
                                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    c = Cluster(d)
    c.step()
    a = c.rss[0]["metadata"]["annotations"]
    assert a["kubernetes.io/change-cause"] == "v1 please"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in a


# ---- rolling update ---------------------------------------------------------------------------------

@pytest.mark.parametrize("replicas,surge,unavail", [(4, "25%", "25%"), (10, 3, 0), (5, 0, 2), (3, "50%", "50%")])
def test_rolling_update_keeps_within_surge_and_unavailable_and_completes(replicas, surge, unavail):
    d = deployment(replicas, strategy={"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}})
    c = Cluster(d)
    c.run(5)
    c.set_image("v2")
    max_s, max_u = resolve_fenceposts(c.d)
    for _ in range(40):
        c.step()
        total = sum(rs["spec"]["replicas"] for rs in c.rss)
        assert total <= replicas + max_s
        assert sum(c.history[-1].values()) >= replicas - max_u
    assert c.sizes() == {"v1": 0, "v2": replicas}
    assert c.condition("Progressing") == ("True", "NewReplicaSetAvailable")
    new = next(rs for rs in c.rss if c.image(rs) == "v2")
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert c.d["metadata"]["annotations"][REVISION] == "2"
    assert c.d["status"]["observedGeneration"] == 2


def test_a_rollout_whose_pods_never_become_ready_stops_at_max_unavailable_and_times_out():
    d = deployment(4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                   progressDeadlineSeconds=30)
    c = Cluster(d, healthy=lambda rs: rs["spec"]["template"]["spec"]["containers"][0]["image"] == "v1")
    c.run(3)
    c.set_image("broken")
    c.run(10)
    assert c.sizes() == {"v1": 3, "broken": 2}
    assert c.history[-1]["v1"] == 3  # old pods keep serving
    assert c.condition("Progressing")[1] == "ReplicaSetUpdated"
    s = c.step(1)
    assert s.requeue_after is not None and 15 < s.requeue_after <= 31  # until the deadline
    c.step(30)
    assert c.condition("Progressing") == ("False", "ProgressDeadlineExceeded")
    assert c.condition("Available") == ("True", "MinimumReplicasAvailable")
    assert c.sizes() == {"v1": 3, "broken": 2}
    assert c.step().requeue_after is None
    # fixing the template rolls on: a third ReplicaSet, the broken one scaled away
    c.set_image("v3")
    c.healthy = lambda rs: rs["spec"]["template"]["spec"]["containers"][0]["image"] != "broken"
    c.run(30)
    assert c.sizes() == {"v1": 0, "broken": 0, "v3": 4}
    assert c.condition("Progressing") == ("True", "NewReplicaSetAvailable")


def test_unhealthy_old_replicas_are_cleaned_up_first():
    d = deployment(4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    c = Cluster(d, healthy=lambda rs: False)
    c.run(3)  # nothing ever became available
    c.set_image("v2")
    c.healthy = lambda rs: c.image(rs) == "v2"
    c.run(20)
    assert c.sizes() == {"v1": 0, "v2": 4}


# ---- scaling ----------------------------------------------------------------------------------------

def test_scaling_mid_rollout_is_proportional():
    d = deployment(10, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}})
    c = Cluster(d, healthy=lambda rs: c.image(rs) == "v1")
    c.run(3)
    c.set_image("v2")
    c.run(5)
    assert c.sizes() == {"v1": 8, "v2": 5}  # 13 = 10 + surge
    c.update(replicas=20)  # max 23: +10 spread by each set's share of the old maximum (13)
    s = c.step()
    assert c.sizes() == {"v1": 14, "v2": 9}
    assert any("Scaled up replica set" in m and "from 8 to 14" in m for m in c.events)
    assert "update_rs" in [a.verb for a in s.actions]
    c.update(replicas=5)  # max 8: -15 spread the same way, older first when shrinking
    c.step()
    assert c.sizes() == {"v1": 5, "v2": 3}


def test_scale_of_a_settled_deployment_resizes_its_one_replica_set():
    c = Cluster(deployment(3))
    c.run(3)
    c.update(replicas=7)
    c.step()
    [rs] = c.rss
    assert rs["spec"]["replicas"] == 7
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "7"
    c.update(replicas=0)
    c.run(2)
    assert c.rss[0]["spec"]["replicas"] == 0
    assert c.d["status"].get("replicas", 0) == 0


# ---- Recreate -----------------------------------------------------------------------------------------

def test_recreate_scales_old_to_zero_before_creating_the_new():
    c = Cluster(deployment(3, strategy={"type": "Recreate"}))
    c.run(3)
    c.set_image("v2")
    s = c.step()
    assert [a.verb for a in s.actions if a.verb != "event"][:1] == ["update_rs"]
    assert c.sizes() == {"v1": 0}  # no new ReplicaSet while old pods may run
    c.run(5)
    assert c.sizes() == {"v1": 0, "v2": 3}
    assert all(not (h.get("v1") and h.get("v2")) for h in c.history)


# ---- history, rollback, pause --------------------------------------------------------------------------

def test_rollback_revives_the_old_replica_set_with_a_new_revision():
    c = Cluster(deployment(2))
    c.run(3)
    original = copy.deepcopy(c.d["spec"]["template"])
    c.set_image("v2")
    c.run(10)
    # kubectl rollout undo: the old ReplicaSet's template, hash label removed, patched back
    c.update(template=original)
    c.run(10)
    assert len(c.rss) == 2 and c.sizes() == {"v1": 2, "v2": 0}
    v1 = next(rs for rs in c.rss if c.image(rs) == "v1")
    assert v1["metadata"]["annotations"][REVISION] == "3"
    assert v1["metadata"]["annotations"][REVISION_HISTORY] == "1"
    assert c.d["metadata"]["annotations"][REVISION] == "3"
    c.set_image("v2")
    c.run(10)
    v2 = next(rs for rs in c.rss if c.image(rs) == "v2")
    assert v2["metadata"]["annotations"][REVISION] == "4"
    assert v2["metadata"]["annotations"][REVISION_HISTORY] == "2"


def test_revision_history_limit_deletes_the_oldest_empty_replica_sets():
    c = Cluster(deployment(1, revisionHistoryLimit=1))
    for image in ("v1", "v2", "v3", "v4"):
        c.set_image(image)
        c.run(8)
    assert sorted(c.sizes()) == ["v3", "v4"]


def test_paused_deployment_scales_but_does_not_roll_out():
    c = Cluster(deployment(2))
    c.run(3)
    c.update(paused=True)
    c.set_image("v2")
    c.run(3)
    assert c.sizes() == {"v1": 2}
    assert c.condition("Progressing") == ("Unknown", "DeploymentPaused")
    c.update(replicas=4)
    c.run(2)
    assert c.sizes() == {"v1": 4}
    c.update(paused=False)
    c.step()
    assert c.condition("Progressing")[1] in ("DeploymentResumed", "NewReplicaSetCreated", "ReplicaSetUpdated")
    c.run(20)
    assert c.sizes() == {"v1": 0, "v2": 4}


def test_no_progress_deadline_means_no_progressing_condition():
    c = Cluster(deployment(2, progressDeadlineSeconds=2 ** 31 - 1))
    c.run(4)
    assert [x["type"] for x in c.d["status"]["conditions"]] == ["Available"]


def test_a_deleting_deployment_only_updates_its_status():
    d = deployment(2)
    d["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    s = Cluster(d).step()
    assert [a.verb for a in s.actions] == ["status"]
