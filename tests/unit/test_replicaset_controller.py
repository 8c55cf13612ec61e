"""The ReplicaSet controller's pure core: claims, pod creation, slow start, deletion ranking,
status and expectations (pkg/controller/replicaset semantics)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from svcnet.controllers.replicaset import (Expectations, calculate_status, claim_pods,
                                           manage_replicas, new_pod, rank_pods_for_deletion,
                                           slow_start_batches)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rs(replicas=3, uid="rs-uid", deleting=False, generation=2, min_ready=0, status=None) -> dict:
    m = {"name": "web-abc", "namespace": "ns", "uid": uid, "generation": generation}
    if deleting:
        m["deletionTimestamp"] = ts(0)
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": m,
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"},
                                               "annotations": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": status or {}}


def pod(name, labels=None, owner=None, node="", phase="Running", ready=None, ready_since=100.0,
        created=1000.0, restarts=0, cost=None, deleting=False) -> dict:
    m = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels or {"app": "web"},
         "creationTimestamp": ts(created)}
    if owner:
        m["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x",
                                 "uid": owner, "controller": True}]
    if cost is not None:
        m["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    if deleting:
        m["deletionTimestamp"] = ts(0)
    ready = phase == "Running" if ready is None else ready
    st = {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": restarts}],
          "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                          "lastTransitionTime": ts(ready_since)}]}
    return {"metadata": m, "spec": {"nodeName": node}, "status": st}


def names(pods) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


# ---- claims ---------------------------------------------------------------------------------------

def test_claim_keeps_adopts_releases_and_ignores_as_controller_ref_manager():
    pods = [pod("mine", owner="rs-uid"), pod("orphan"), pod("other", owner="other-uid"),
            pod("stray", labels={"app": "db"}, owner="rs-uid"), pod("unrelated", labels={"app": "db"}),
            pod("dying-orphan", deleting=True)]
    c = claim_pods(rs(), pods)
    assert names(c.owned) == ["mine", "orphan"]
    assert names(c.adopt) == ["orphan"]
    assert names(c.release) == ["stray"]


def test_a_deleting_replica_set_adopts_and_releases_nothing():
    c = claim_pods(rs(deleting=True), [pod("orphan"), pod("stray", labels={"app": "db"}, owner="rs-uid"),
                                       pod("mine", owner="rs-uid")])
    assert (names(c.owned), c.adopt, c.release) == (["mine"], [], [])


def test_a_non_controller_owner_reference_still_leaves_the_pod_an_orphan():
    p = pod("weak")
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "x", "uid": "rs-uid"}]
    assert names(claim_pods(rs(), [p]).adopt) == ["weak"]


def test_match_expressions_selectors_are_honoured():
    r = rs()
    r["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}
    c = claim_pods(r, [pod("a"), pod("b", labels={"app": "api"}), pod("c", labels={"app": "db"})])
    assert names(c.adopt) == ["a", "b"]


# ---- creation -------------------------------------------------------------------------------------

def test_new_pod_comes_from_the_template_and_is_controlled_by_the_replica_set():
    p = new_pod(rs())
    assert p["metadata"]["generateName"] == "web-abc-"
    assert p["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert p["metadata"]["annotations"] == {"a": "b"}
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": "web-abc", "uid": "rs-uid",
                                                 "controller": True, "blockOwnerDeletion": True}]
    assert p["spec"] == {"containers": [{"name": "c", "image": "i"}]}


def test_slow_start_doubles_batches_up_to_the_count():
    assert slow_start_batches(10) == [1, 2, 4, 3]
    assert slow_start_batches(1) == [1]
    assert slow_start_batches(0) == []
    assert sum(slow_start_batches(500)) == 500


def test_manage_replicas_creates_the_difference_up_to_the_burst():
    assert manage_replicas(rs(replicas=5), [pod("a")]).create == 4
    assert manage_replicas(rs(replicas=900), [], burst=500).create == 500
    m = manage_replicas(rs(replicas=3), [pod("a"), pod("b"), pod("c")])
    assert (m.create, m.delete) == (0, [])


# ---- deletion ranking -----------------------------------------------------------------------------

def first_deleted(*pods, related=()):
    return names(rank_pods_for_deletion(list(pods), related, 1, NOW))[0]


def test_ranking_unscheduled_then_pending_then_not_ready():
    assert first_deleted(pod("sched", node="n1"), pod("unsched")) == "unsched"
    assert first_deleted(pod("running", node="n1"), pod("pending", node="n1", phase="Pending")) == "pending"
    assert first_deleted(pod("unknown", node="n1", phase="Unknown"),
                         pod("pending", node="n1", phase="Pending")) == "pending"
    assert first_deleted(pod("ready", node="n1"), pod("notready", node="n1", ready=False)) == "notready"


def test_ranking_deletion_cost_then_doubled_up_nodes():
    assert first_deleted(pod("dear", node="n1", cost=10), pod("cheap", node="n1", cost=-5)) == "cheap"
    a, b = pod("alone", node="n1"), pod("crowded", node="n2")
    related = [a, b, pod("x", node="n2"), pod("y", node="n2")]
    assert first_deleted(a, b, related=related) == "crowded"


def test_ranking_newer_ready_then_restarts_then_newer_created():
    # ready for 10 s vs 1000 s: different log2 buckets, the more recently ready goes first
    assert first_deleted(pod("old", node="n1", ready_since=1000), pod("new", node="n1", ready_since=10)) == "new"
    assert first_deleted(pod("calm", node="n1", restarts=0), pod("crashy", node="n1", restarts=4)) == "crashy"
    assert first_deleted(pod("elder", node="n1", created=5000, ready_since=100),
                         pod("young", node="n1", created=50, ready_since=100)) == "young"


def test_all_pods_when_the_difference_covers_them():
    ps = [pod("a"), pod("b")]
    assert rank_pods_for_deletion(ps, [], 5, NOW) == ps
    assert names(manage_replicas(rs(replicas=1), [pod("r", node="n"), pod("u")], now=NOW).delete) == ["u"]


# ---- status ---------------------------------------------------------------------------------------

def test_status_counts_and_observed_generation():
    ps = [pod("a", labels={"app": "web", "tier": "fe"}), pod("b", ready=False),
          pod("c", labels={"app": "web", "tier": "fe"}, ready_since=1)]
    st = calculate_status(rs(min_ready=5), ps, None, NOW)
    assert st == {"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 1,
                  "observedGeneration": 2}
    assert calculate_status(rs(), [], None, NOW) == {"replicas": 0, "observedGeneration": 2}


def test_replica_failure_condition_set_once_and_cleared():
    st = calculate_status(rs(replicas=2), [], "quota exceeded", NOW)
    [c] = st["conditions"]
    assert (c["type"], c["status"], c["reason"], c["message"]) == ("ReplicaFailure", "True", "FailedCreate",
                                                                   "quota exceeded")
    again = calculate_status(rs(replicas=2, status=st), [], "other error", NOW + timedelta(seconds=9))
    assert again["conditions"] == [c]  # an existing failure condition is kept as it is
    assert "conditions" not in calculate_status(rs(replicas=2, status=st), [], None, NOW)
    deleting = calculate_status(rs(replicas=0), [pod("a")], "denied", NOW)
    assert deleting["conditions"][0]["reason"] == "FailedDelete"


# ---- expectations ---------------------------------------------------------------------------------

def test_expectations_hold_until_observed_or_expired():
    t = [0.0]
    e = Expectations(clock=lambda: t[0], ttl=300)
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/a", "ns/b"])
    e.deletion_observed("ns/rs", "ns/a")
    assert not e.satisfied("ns/rs")
    t[0] = 301
    assert e.satisfied("ns/rs")  # a lost watch event cannot wedge the ReplicaSet


# ---- the controller shell over an in-memory API ---------------------------------------------------

class FakeAPI:
    """The API calls the controller makes, kept in memory: objects by kind, generateName honoured,
    uid preconditions on patches ignored (nothing races here)."""

    def __init__(self):
        self.objects: dict[str, dict[str, dict]] = {"Pod": {}, "ReplicaSet": {}, "Event": {}}
        self.n = 0

    async def create(self, res, obj, manager=""):
        import copy as _copy
        obj = _copy.deepcopy(obj)
        m = obj["metadata"]
        if not m.get("name"):
            self.n += 1
            m["name"] = f"{m['generateName']}{self.n:05d}"
        m.setdefault("uid", f"uid-{m['name']}")
        m["resourceVersion"] = str(self.n)
        self.objects[res.kind][m["name"]] = obj
        return obj

    async def get(self, res, namespace, name, sub=""):
        return self.objects[res.kind][name]

    async def update_status(self, res, obj, manager=""):
        self.objects[res.kind][obj["metadata"]["name"]] = obj
        return obj

    async def delete(self, res, namespace, name, options=None):
        return self.objects[res.kind].pop(name)

    async def patch(self, res, namespace, name, patch, **kw):
        obj = self.objects[res.kind][name]
        for r in patch["metadata"]["ownerReferences"]:
            refs = obj["metadata"].setdefault("ownerReferences", [])
            refs[:] = [x for x in refs if x.get("uid") != r["uid"]]
            if r.get("$patch") != "delete":
                refs.append(r)
        return obj


class Cache:
    def __init__(self):
        self.cache: dict[str, dict] = {}


class Caches:
    def __init__(self):
        from svcnet.controllers.endpointslice import LabelIndex
        self.infs = {"ReplicaSet": Cache(), "Pod": Cache()}
        self.pods = LabelIndex()

    def informer(self, kind):
        return self.infs[kind]


def controller():
    from svcnet.controllers.replicaset import ReplicaSetController
    api = FakeAPI()
    c = ReplicaSetController(api)
    c.caches = Caches()
    return c, api


def observe(c, pod: dict) -> None:
    """The pod informer delivering ADDED for `pod`."""
    key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    c.caches.infs["Pod"].cache[key] = pod
    c.caches.pods.set(key, pod["metadata"]["namespace"], pod["metadata"]["labels"])
    c._on_pod("ADDED", None, pod)


def test_expectations_keep_a_slow_informer_from_creating_twice():
    import asyncio

    async def scenario():
        c, api = controller()
        r = rs(replicas=3)
        c.caches.infs["ReplicaSet"].cache["ns/web-abc"] = r
        api.objects["ReplicaSet"]["web-abc"] = r
        await c.sync("ns/web-abc")
        assert len(api.objects["Pod"]) == 3
        await c.sync("ns/web-abc")  # the informer has seen none of them yet
        assert len(api.objects["Pod"]) == 3
        for p in list(api.objects["Pod"].values()):
            observe(c, p)
        await c.sync("ns/web-abc")
        assert len(api.objects["Pod"]) == 3
        assert api.objects["ReplicaSet"]["web-abc"]["status"]["replicas"] == 3
        reasons = sorted(e["reason"] for e in api.objects["Event"].values())
        assert reasons == ["SuccessfulCreate"] * 3
        # scale down: the deletions are expected until observed, too
        r = dict(r, spec=dict(r["spec"], replicas=1))
        c.caches.infs["ReplicaSet"].cache["ns/web-abc"] = r
        await c.sync("ns/web-abc")
        await c.sync("ns/web-abc")
        assert len(api.objects["Pod"]) == 1
    asyncio.run(scenario())
